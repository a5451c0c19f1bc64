"""``mtvr push``: publish a model folder to the Hugging Face Hub."""

from __future__ import annotations

import argparse

from .options import add_hub_token

NAME = "push"
HELP = "publish a model folder to the Hugging Face Hub"


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("model_dir", help="model folder (e.g. runs/NAME/best)")
    s.add_argument("repo_id", help="Hub repository, e.g. your-org/c2kd-labse-multi-msrvtt")
    add_hub_token(s)
    s.add_argument("--private", action="store_true", help="create the repository as private")
    s.add_argument("--message", help="commit message")
    s.add_argument("--revision", help="branch to push to")


def run(args: argparse.Namespace) -> int:
    from ..retriever import Retriever

    retriever = Retriever.from_pretrained(args.model_dir, device="cpu")
    url = retriever.push_to_hub(
        args.repo_id, token=args.token, private=args.private, commit_message=args.message, revision=args.revision
    )
    print(url)
    return 0
