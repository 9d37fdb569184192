"""Training SDA models: the dataset format, a synthetic talking-face corpus, preparation of
real talking-face videos, the paper's discriminators and losses, the training loop and the
evaluation metrics. Import the submodules you need (nothing heavy is imported here)."""

__all__: list[str] = []
