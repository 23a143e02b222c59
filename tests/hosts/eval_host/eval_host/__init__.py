"""eval-host: a tiny regressor whose evaluation code lives in eval_host.evaluation."""
