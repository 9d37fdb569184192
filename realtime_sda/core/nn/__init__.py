"""The SDA networks, with the original checkpoints' module names (so their state dicts load
strictly). These are the reference modules used for training and for checking the fast
inference path in :mod:`realtime_sda.core.engine`."""

from .audio_encoder import AudioFrameEncoder, ContentEncoder
from .generator import FrameGenerator, UnetBlock
from .identity_encoder import IdentityEncoder

__all__ = ["AudioFrameEncoder", "ContentEncoder", "IdentityEncoder", "FrameGenerator", "UnetBlock"]
