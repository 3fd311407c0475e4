"""The mistakes a user can make, under one base class.

Everything raised as a :class:`VbpLiveError` is a problem with what the user gave us (a file, a
config, a checkpoint, a device, an option) and carries a message that names the thing and what
is wrong with it; the CLI prints it as one line and exits with status 1. Any other exception
escaping a command is a bug in vbp_live, and the CLI shows its traceback.

The subclasses also derive from :class:`ValueError` (or :class:`RuntimeError` for devices), so
code that caught those before keeps working.
"""

from __future__ import annotations


class VbpLiveError(Exception):
    """A user-facing error: one clear line that names the file, key or option at fault."""


class InputError(VbpLiveError, ValueError):
    """A recording, video, image folder, dataset or other input that cannot be read as asked."""


class ConfigError(VbpLiveError, ValueError):
    """A configuration file or ``--set`` override that is malformed, unknown or out of range."""


class CheckpointError(VbpLiveError, ValueError):
    """A checkpoint or model file that cannot be loaded (corrupt, foreign, unsafe or mismatched)."""


class ModelError(VbpLiveError, ValueError):
    """A model that a method cannot work with (e.g. a network VisualBackProp cannot follow)."""


class OutputError(VbpLiveError, ValueError):
    """An output (video, folder, file) that cannot be written as asked."""


class DeviceError(VbpLiveError, RuntimeError):
    """A device or backend that was asked for but is not available here."""


class UsageError(VbpLiveError, ValueError):
    """Command-line options that contradict each other or are out of range."""
