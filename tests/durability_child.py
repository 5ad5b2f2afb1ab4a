"""The child of the kill -9 test: the live line on the demo source with the bundled recipe, logging to a
result database; a result's id is printed (told to the line) only when `committed` says its row is safe."""

import sys
import time

from station.core.inspector import Inspector
from station.core.live import LivePipeline
from station.core.recipe import Recipe
from station.core.resources import bundled_recipe
from station.core.results import ResultStore
from station.core.sources import make_source


def tell(tickets) -> None:
    for ticket in tickets:
        if ticket.durable:
            sys.stdout.write(f"{ticket.uid} {ticket.state}\n")
    sys.stdout.flush()


def main(folder: str) -> None:
    store = ResultStore(f"sqlite:///{folder}/results.db", archive_dir=f"{folder}/archive", archive="all")
    store.committed.connect(tell)
    pipeline = LivePipeline(make_source("demo", fps=120), Inspector(Recipe.load(bundled_recipe())), store=store)
    pipeline.start()
    print("started", flush=True)
    time.sleep(120)  # killed long before


if __name__ == "__main__":
    main(sys.argv[1])
