"""Registry clients: find the digest behind a tag, the tags on a digest, create tags and delete them by tag.

`registry_client(settings)` returns an `OciClient` (any OCI Distribution registry) or a
`HarborClient` (Harbor API v2.0). See `base.RegistryClient` for the interface and `errors` for the
typed failures.
"""

from listener.registry.base import (
    DELETE_OUTCOMES,
    AlreadyThere,
    CheckResult,
    Created,
    DeleteOutcome,
    RegistryClient,
    TagResult,
)
from listener.registry.credentials import (
    Credentials,
    CredentialsError,
    DockerConfigKeyring,
    Keyring,
)
from listener.registry.errors import (
    AuthenticationFailed,
    DigestMismatch,
    InvalidName,
    NotFound,
    PermanentError,
    PermissionDenied,
    PolicyRefused,
    RateLimited,
    RegistryError,
    RegistryUnavailable,
    TagConflict,
    TransientError,
)
from listener.registry.factory import registry_client
from listener.registry.harbor import HarborClient
from listener.registry.oci import OciClient
from listener.registry.transport import RetryPolicy

__all__ = [
    "DELETE_OUTCOMES",
    "AlreadyThere",
    "AuthenticationFailed",
    "CheckResult",
    "Created",
    "Credentials",
    "CredentialsError",
    "DeleteOutcome",
    "DigestMismatch",
    "DockerConfigKeyring",
    "HarborClient",
    "InvalidName",
    "Keyring",
    "NotFound",
    "OciClient",
    "PermanentError",
    "PermissionDenied",
    "PolicyRefused",
    "RateLimited",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailable",
    "RetryPolicy",
    "TagConflict",
    "TagResult",
    "TransientError",
    "registry_client",
]
