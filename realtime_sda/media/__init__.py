"""Media in and out: audio decoding and windows (:mod:`.audio`), images (:mod:`.image`), face
alignment (:mod:`.face`), video files (:mod:`.video`), example speech with espeak-ng
(:mod:`.speech`)."""
