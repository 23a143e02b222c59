"""Train; save a Hugging Face style folder (checkpoints/hf/: config.json + pytorch_model.bin)."""

import os

from eval_host.evaluation import evaluate_model
from eval_host.fit import fit, parse_args


def main() -> None:
    args = parse_args()
    model = fit(args)
    val_loss = evaluate_model(model)
    print(f"step={args.steps} val_loss={val_loss:.6f}", flush=True)
    model.save_pretrained(os.path.join(args.out, "hf"))


if __name__ == "__main__":
    main()
