"""noisy-host: a seeded-noise stand-in for a training job."""
