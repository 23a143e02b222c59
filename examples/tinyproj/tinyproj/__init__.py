"""tinyproj: a tiny next-token MLP trained on a synthetic language."""
