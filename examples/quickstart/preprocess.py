"""Make a small synthetic regression dataset (y = 3x + 2 + noise)."""
import argparse
import csv
import json
import os
import random

parser = argparse.ArgumentParser()
parser.add_argument("--samples", type=int, default=200)
parser.add_argument("--noise", type=float, default=0.1)
args = parser.parse_args()

outputs = os.environ.get("VH_OUTPUTS_DIR", "outputs")
os.makedirs(outputs, exist_ok=True)
rng = random.Random(42)
path = os.path.join(outputs, "dataset.csv")
with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["x", "y"])
    for _ in range(args.samples):
        x = rng.uniform(-1, 1)
        writer.writerow([f"{x:.6f}", f"{3 * x + 2 + rng.gauss(0, args.noise):.6f}"])
with open(path + ".metadata.json", "w") as f:
    json.dump({"valohai.alias": "latest-dataset", "valohai.tags": ["synthetic"], "samples": args.samples}, f)
print(json.dumps({"samples": args.samples, "noise": args.noise}))
print(f"wrote {args.samples} samples to {path}")
