"""Errors of the shared contract (and of the command line, :mod:`vad.cli`)."""


class ContractError(Exception):
    """Base class of the contract's errors."""


class CallbackRefused(ContractError, ValueError):
    """The callback URL is not allowed; the message says why."""


class StackError(ContractError, RuntimeError):
    """A part of the local stack of ``vad serve`` / ``vad demo`` could not be started."""


class StreamRefused(ContractError, ValueError):
    """The stream URL is not allowed (scheme, host, address outside the allow-list, streams off); says why."""
