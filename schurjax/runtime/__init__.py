"""The machine a run is on: package versions and the JAX backend, and the processes of one sweep.

- :mod:`~schurjax.runtime.environment`: package versions and the JAX backend, recorded in every manifest;
- :mod:`~schurjax.runtime.distributed`: the processes of one sweep on ``jax.distributed``;
"""
