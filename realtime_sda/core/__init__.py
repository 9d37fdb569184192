"""The model: its configuration (:mod:`.config`), the reference networks with the original
state-dict names (:mod:`.nn`), the folded inference engine (:mod:`.engine`), per-session
state (:mod:`.state`), the noise prior (:mod:`.noise`) and :class:`~.model.SDAModel`."""
