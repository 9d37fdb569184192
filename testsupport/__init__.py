"""Test and benchmark tooling, not installed with the library: random-weight models and
checkpoints (:mod:`.models`), speech-like audio and the bundled face photo
(:mod:`.media`), the per-frame :mod:`.stepper`, a loopback aiortc viewer
(:mod:`.loopback_client`), headless Chromium (:mod:`.chromium`) and virtual time for pacing
tests (:mod:`.virtualtime`)."""
