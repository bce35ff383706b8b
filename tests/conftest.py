"""Shared test setup: 8 simulated CPU devices, so sharded code is exercised without accelerators."""

import jax

jax.config.update("jax_num_cpu_devices", 8)
