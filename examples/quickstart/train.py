"""Fit y = w*x + b by gradient descent; one JSON metadata line per epoch."""
import argparse
import csv
import glob
import json
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--learning-rate", type=float, default=0.05)
parser.add_argument("--optimizer", default="sgd")
parser.add_argument("--verbose", action="store_true")
args = parser.parse_args()

inputs = os.environ.get("VH_INPUTS_DIR", "inputs")
files = sorted(glob.glob(os.path.join(inputs, "dataset", "*.csv")))
if not files:
    sys.exit("no dataset input: run the preprocess step first")
rows = []
for path in files:
    with open(path) as f:
        rows += [(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)]

w = b = velocity_w = velocity_b = 0.0
for epoch in range(1, args.epochs + 1):
    grad_w = sum(2 * (w * x + b - y) * x for x, y in rows) / len(rows)
    grad_b = sum(2 * (w * x + b - y) for x, y in rows) / len(rows)
    if args.optimizer == "momentum":
        velocity_w = 0.9 * velocity_w - args.learning_rate * grad_w
        velocity_b = 0.9 * velocity_b - args.learning_rate * grad_b
        w, b = w + velocity_w, b + velocity_b
    else:
        w, b = w - args.learning_rate * grad_w, b - args.learning_rate * grad_b
    loss = sum((w * x + b - y) ** 2 for x, y in rows) / len(rows)
    print(json.dumps({"epoch": epoch, "loss": round(loss, 6), "w": round(w, 4), "b": round(b, 4)}))
    if args.verbose:
        print(f"epoch {epoch}: gradient ({grad_w:.4f}, {grad_b:.4f})", file=sys.stderr)
    time.sleep(0.05)

outputs = os.environ.get("VH_OUTPUTS_DIR", "outputs")
os.makedirs(outputs, exist_ok=True)
with open(os.path.join(outputs, "model.json"), "w") as f:
    json.dump({"w": w, "b": b}, f)
with open(os.path.join(outputs, "model.json.metadata.json"), "w") as f:
    json.dump({"valohai.alias": "latest-model", "final_loss": loss}, f)
with open(os.path.join(outputs, "metrics.json"), "w") as f:
    json.dump({"loss": loss, "epochs": args.epochs}, f)
print(f"trained: w={w:.3f} b={b:.3f} loss={loss:.5f}")
