"""The error types a user can see. Each message names what failed and where, in one line."""


class IsolabError(Exception):
    """Base of every error isolab reports to a user as one readable line."""


class SpecError(IsolabError, ValueError):
    """An InstanceSpec or a configuration value is invalid."""


class HostSetupError(IsolabError):
    """The host lacks something isolab needs (root, apt, a package, a daemon)."""


class ImageError(IsolabError):
    """The shared root filesystem could not be built, found or used."""


class PlatformUnavailable(IsolabError):
    """A platform cannot run on this host; the message says why (recorded as a skip)."""


class InstanceError(IsolabError):
    """Starting, using or stopping an instance failed."""


class ExecTimeout(InstanceError):
    """A command inside an instance did not finish in time."""
