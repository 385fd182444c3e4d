"""The contract shared by the API (:mod:`service`) and the workers (:mod:`workers`), and the infrastructure both use.

The contract, torch-free and flat (it imports nothing of ours but itself):

* :mod:`vad.schema`: the result a client gets (``AnalysisResult``).
* :mod:`vad.jobstate`: the job record, its options and statuses, the job function's name the API enqueues.
* :mod:`vad.streams`: the live-stream record and its statuses; :mod:`vad.streamlua`: the Lua scripts every change of
  a stream's ownership and every owner's write go through.
* :mod:`vad.keys`: every Redis key of ours, and how record fields are encoded.
* :mod:`vad.settings`: the settings both deployables share (``QueueSettings``).
* :mod:`vad.callbacks`: webhook signatures (what a receiver checks).
* :mod:`vad.exceptions`: the errors of all of the above.

Shared infrastructure, in subpackages that import the contract and nothing else of ours:

* :mod:`vad.net`: the one policy for every outbound URL (callbacks, video sources, streams) and redaction of URLs
  and paths in messages.
* :mod:`vad.storage`: uploads in a local directory or an S3-compatible bucket, the workers' scratch space, and the
  one checked byte stream (size cap, SHA-256, container sniff).

The command line, which may import everything, is :mod:`vad.cli`.
"""

from importlib import metadata

try:
    __version__ = metadata.version("dsanet-vad")  # one source: pyproject.toml, through the installed metadata
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
