"""Performance plumbing, private: numba kernels (``kernels``), the fused MF step
(``fused``), LazyAdam and RowwiseAdam, the default Adam of the fused step (``optim``), and
the gather-dot autograd function (``gather_dot``). Each kernel has a plain-torch reference
and an equality test; nothing here is public API. Modules are imported one by one (no
eager imports) because ``fused`` sits above the models while ``gather_dot`` sits below
them."""
