"""Engine backends beyond one process (layer 5); ``import superposition`` imports none of this.

:class:`~superposition.distributed.ray_backend.RayBackend` runs a sweep's chunks as Ray tasks
(``pip install 'toy-superposition[ray]'``); :func:`backend` builds a backend from its name, as the
command line spells it.
"""

from typing import Any

from superposition.errors import ConfigError

BACKENDS = ("local", "ray")


def backend(name: str, *, address: str | None = None, **options: Any) -> Any:
    """The sweep backend called ``name`` ("local" or "ray"); ``address`` is the Ray cluster's."""
    if name == "local":
        if address is not None:
            raise ConfigError("--address is for the ray backend; add --backend ray or drop it")
        from superposition.sweep import LocalBackend

        return LocalBackend()
    if name == "ray":
        from superposition.distributed.ray_backend import RayBackend

        return RayBackend(address=address, **options)
    raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
