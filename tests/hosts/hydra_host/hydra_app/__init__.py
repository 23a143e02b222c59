"""hydra_app: a tiny MLP regressor configured with Hydra config groups."""
