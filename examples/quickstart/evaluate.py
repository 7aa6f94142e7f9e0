"""Score the model on the dataset; the result is metadata and an output file."""
import csv
import glob
import json
import os

inputs = os.environ.get("VH_INPUTS_DIR", "inputs")
with open(glob.glob(os.path.join(inputs, "model", "*.json"))[0]) as f:
    model = json.load(f)
errors = []
for path in glob.glob(os.path.join(inputs, "dataset", "*.csv")):
    with open(path) as f:
        errors += [abs(model["w"] * float(r["x"]) + model["b"] - float(r["y"])) for r in csv.DictReader(f)]
mae = sum(errors) / len(errors)
print(json.dumps({"mae": round(mae, 6), "n": len(errors)}))
with open(os.path.join(os.environ.get("VH_OUTPUTS_DIR", "outputs"), "evaluation.json"), "w") as f:
    json.dump({"mae": mae}, f)
