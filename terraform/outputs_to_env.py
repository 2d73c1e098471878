"""Copy Terraform outputs into k8s/overlays/prod/terraform-outputs.env.

The env file's keys are Terraform output names (the prod overlay's `replacements` read them);
this rewrites their values from `terraform output -json` and keeps the file's comments. A key
that is not a Terraform output is an error, so a renamed output cannot go unnoticed.

    python3 terraform/outputs_to_env.py                      # runs terraform -chdir=terraform
    terraform -chdir=terraform output -json > out.json
    python3 terraform/outputs_to_env.py --outputs-json out.json --print-gh-vars

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / "k8s" / "overlays" / "prod" / "terraform-outputs.env"
# GitHub repository variables of the release and retrain workflows -> Terraform outputs.
GH_VARIABLES = {
    "AWS_REGION": "region",
    "AWS_ROLE_ARN": "ci_role_arn",
    "EKS_CLUSTER_NAME": "cluster_name",
}


def load_outputs(path: Path | None) -> dict[str, object]:
    if path is None:
        raw = subprocess.run(
            ["terraform", f"-chdir={ROOT / 'terraform'}", "output", "-json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    else:
        raw = path.read_text()
    return {name: item["value"] for name, item in json.loads(raw).items()}


def render(env_text: str, outputs: dict[str, object]) -> str:
    lines = []
    for line in env_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            lines.append(line)
            continue
        key = line.split("=", 1)[0].strip()
        if key not in outputs:
            raise KeyError(f"{key} is not a Terraform output (outputs: {sorted(outputs)})")
        value = outputs[key]
        if not isinstance(value, str) or not value or "\n" in value:
            raise ValueError(f"output {key} is not a one-line string: {value!r}")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs-json", type=Path, help="saved `terraform output -json`")
    parser.add_argument("--env-file", type=Path, default=ENV_FILE)
    parser.add_argument(
        "--print-gh-vars",
        action="store_true",
        help="also print `gh variable set` commands for the workflows",
    )
    args = parser.parse_args(argv)

    outputs = load_outputs(args.outputs_json)
    try:
        args.env_file.write_text(render(args.env_file.read_text(), outputs))
    except (KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.env_file}")
    if args.print_gh_vars:
        for var, output in GH_VARIABLES.items():
            print(f"gh variable set {var} --body '{outputs[output]}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
