"""The contract shared by the API (:mod:`service`) and the workers (:mod:`workers`).

Torch-free and flat: the result schema (:mod:`vad.schema`), job records and Redis keys (:mod:`vad.jobstate`),
the settings both deployables share (:mod:`vad.settings`), the callback policy (:mod:`vad.callbacks`) and their
errors (:mod:`vad.exceptions`). It imports nothing of ours but itself; the command line, which may import
everything, is :mod:`vad.cli`.
"""

from importlib import metadata

try:
    __version__ = metadata.version("dsanet-vad")  # one source: pyproject.toml, through the installed metadata
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
