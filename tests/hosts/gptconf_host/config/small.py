# a smaller, faster run
out_dir = "out-small"
max_iters = 40
