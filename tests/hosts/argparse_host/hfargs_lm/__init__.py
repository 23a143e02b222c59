"""hfargs_lm: a tiny bigram language model with HfArgumentParser-style arguments."""
