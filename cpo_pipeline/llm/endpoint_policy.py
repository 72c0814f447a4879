"""Which LLM endpoints may receive report text: loopback, allow-listed hosts, or any when told so.

MIMIC-CXR's data use agreement forbids sharing the data with third parties, so report text may
only go to endpoints the user runs or has explicitly allowed. By default that is loopback
(127.0.0.0/8, ::1, localhost) plus the hosts listed in `CPO_LLM_ALLOWED_HOSTS`;
`CPO_LLM_ALLOW_REMOTE_ENDPOINTS=1` lifts the restriction for users whose agreement covers it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

ALLOWED_HOSTS_ENV = "CPO_LLM_ALLOWED_HOSTS"
ALLOW_REMOTE_ENV = "CPO_LLM_ALLOW_REMOTE_ENDPOINTS"

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


class EndpointNotAllowedError(PermissionError):
    """Report text would leave for a host the user has not allowed."""


def normalise_host(host: str) -> str:
    """Compare hosts case-insensitively, without IPv6 brackets or the DNS root's trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def endpoint_host(base_url: str) -> str:
    """The host an OpenAI-compatible base URL points at."""
    parts = urlsplit(base_url.strip())
    # The URL itself stays out of the message: it may carry credentials (user:password@host).
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "the LLM base URL must look like http(s)://host[:port]/v1, "
            f"got scheme {parts.scheme!r} and host {parts.hostname!r}"
        )
    return normalise_host(parts.hostname)


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8, ::1, or an IPv4-mapped loopback address (::ffff:127.0.0.1)."""
    host = normalise_host(host)
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def check_endpoint_allowed(
    base_url: str, *, allowed_hosts: Iterable[str] = (), allow_remote: bool = False
) -> str:
    """The endpoint's host; `EndpointNotAllowedError` if report text may not be sent there."""
    host = endpoint_host(base_url)
    if allow_remote or is_loopback(host) or host in {normalise_host(h) for h in allowed_hosts}:
        return host
    raise EndpointNotAllowedError(
        f"refusing to send MIMIC-CXR report text to the LLM endpoint host {host!r}: the data use "
        "agreement forbids sharing the data with third parties, and only loopback addresses and "
        f"allow-listed hosts are allowed. If this endpoint is yours, add {host} to "
        f"{ALLOWED_HOSTS_ENV} (comma-separated) or to the LLM resource's `allowed_hosts`; if your "
        f"agreement permits any endpoint, set {ALLOW_REMOTE_ENV}=1 or the resource's "
        "`allow_remote_endpoints`."
    )


def allowed_hosts_from_env(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The comma-separated host names or addresses (no ports) in `CPO_LLM_ALLOWED_HOSTS`."""
    listed = environ.get(ALLOWED_HOSTS_ENV, "").split(",")
    return tuple(normalise_host(host) for host in listed if host.strip())


def allow_remote_from_env(environ: Mapping[str, str]) -> bool:
    """Whether `CPO_LLM_ALLOW_REMOTE_ENDPOINTS` is set to a true word (1, true, yes, on)."""
    value = environ.get(ALLOW_REMOTE_ENV, "").strip().lower()
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise ValueError(
        f"{ALLOW_REMOTE_ENV}={value!r} is not a yes/no value: expected one of "
        f"{sorted(_TRUE_WORDS | (_FALSE_WORDS - {''}))}"
    )
