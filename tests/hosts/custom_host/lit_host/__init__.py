"""lit_host: a tiny Lightning regressor launched by lit_host.cli."""
