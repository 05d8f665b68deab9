"""The batched engine: a whole Population's values (and derivatives) in one compiled call, with its
devices, kept buffers, compile cache, the JAX / NumPy operator namespaces, the one graph walk and the
NumPy reference."""
