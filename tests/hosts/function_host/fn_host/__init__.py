"""fn_host: a tiny MLP regressor trained by calling fn_host.train.main(...)."""
