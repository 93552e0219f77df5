"""Benchmarks for graphgrad: workloads W1..W5 (defined in docs/benchmarks.md).

- ``benchmarks.reference`` -- hand-written NumPy training steps (the reference
  every other implementation is checked against) and ``make_workload``.
- ``benchmarks.peers``     -- the same steps in PyTorch eager, JAX jit and
  PyTensor (the latter two only when importable).
- ``benchmarks.harness``   -- multi-process, interleaved timing; the system
  registry (``SYSTEMS`` / ``register``) where graphgrad plugs in.
- ``benchmarks.bounds``    -- the costs no NumPy step avoids (imports, float32
  transcendentals, W3's fixed parts), set against the targets.
"""
