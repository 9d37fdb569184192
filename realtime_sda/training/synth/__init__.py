"""A synthetic talking-face corpus: espeak-ng speech (:mod:`.speech`), procedural faces
(:mod:`.faces`), speech-driven landmark animation (:mod:`.animate`), and the corpus
writer (:mod:`.corpus`)."""

__all__: list[str] = []
