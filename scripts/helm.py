#!/usr/bin/env python3
"""Real Helm (the Helm v4 engine in the `helm-python-sdk` package) for the chart tests.

    helm.py lint CHART [--values JSON]
    helm.py render CHART [--values JSON] [--name N] [--namespace NS]     multi-document YAML on stdout
    helm.py install CHART --kubeconfig F --name N --namespace NS [--values JSON]
    helm.py upgrade CHART --kubeconfig F --name N --namespace NS [--values JSON]
    helm.py uninstall --kubeconfig F --name N --namespace NS
    helm.py package CHART --destination DIR                              the .tgz path on stdout

Errors go to stderr with exit code 1, so the Rust tests can show Helm's own message.
"""
import argparse
import json
import sys

import helm_python


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["lint", "render", "install", "upgrade", "uninstall", "package"])
    parser.add_argument("chart", nargs="?")
    parser.add_argument("--values", default="{}")
    parser.add_argument("--name", default="alertcall")
    parser.add_argument("--namespace", default="alertcall-system")
    parser.add_argument("--kubeconfig")
    parser.add_argument("--destination", default=".")
    args = parser.parse_args()
    values = json.loads(args.values)
    try:
        if args.command == "lint":
            report = helm_python.lint(args.chart, values, strict=True, kube_version="v1.20.2")
            problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
            problems += [{"error": e} for e in report.get("errors", []) or []]
            for problem in problems:
                print(f"{problem.get('path', '')}: {problem.get('error')}", file=sys.stderr)
            return 1 if problems else 0
        if args.command == "package":
            print(helm_python.package(args.chart, destination=args.destination))
            return 0
        if args.command == "render":
            chart = helm_python.Chart.load(args.chart)
            manifests = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
            for path in sorted(manifests):
                body = manifests[path].strip()
                if body and path.endswith((".yaml", ".yml")):
                    print(f"---\n# Source: {path}\n{body}")
            return 0
        config = helm_python.Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace)
        if args.command == "install":
            release = config.install(args.chart, args.name, values, namespace=args.namespace,
                                     create_namespace=True, timeout=120)
            print(json.dumps({"name": release.get("name") if isinstance(release, dict) else args.name}))
            return 0
        if args.command == "upgrade":
            release = config.upgrade(args.chart, args.name, values, namespace=args.namespace,
                                     timeout=120)
            print(json.dumps({"name": release.get("name") if isinstance(release, dict) else args.name}))
            return 0
        config.uninstall(args.name)
        return 0
    except helm_python.HelmError as error:
        print(f"helm {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
