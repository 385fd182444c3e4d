"""Shared network infrastructure: the one policy for every outbound URL, and what a message may show of a URL.

* :mod:`vad.net.policy`: allow-lists (networks, addresses, names, wildcards), internal and cloud metadata addresses
  (IPv4 carried in IPv6 included), resolution once, :class:`~vad.net.policy.Target` with the checked addresses.
* :mod:`vad.net.rules`: the policy as each caller applies it: callback URLs, video source URLs, stream URLs.
* :mod:`vad.net.patterns`: the stream URL syntax and the allow-list as regular expressions (the OpenAPI document).
* :mod:`vad.net.pinned`: HTTP(S) connections to the checked addresses only.
* :mod:`vad.net.redact`: URLs without credentials, messages without the server's paths.

It imports the contract (:mod:`vad`) and the standard library only; never torch, :mod:`model`, :mod:`workers`,
:mod:`service` or :mod:`vad.cli`.
"""
