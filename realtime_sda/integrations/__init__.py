"""The avatar inside voice-agent frameworks, each an optional extra imported on demand:

- :mod:`.pipecat`: a pipecat frame processor (``pip install 'realtime-sda[pipecat]'``);
- :mod:`.livekit`: a LiveKit Agents ``VideoGenerator`` (``pip install 'realtime-sda[livekit]'``).

Importing this package imports neither framework; importing a module without its extra
raises an ImportError naming the ``pip install`` line. :mod:`.common` holds what they share.
"""

__all__: list[str] = []
