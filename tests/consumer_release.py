"""Run in a fresh venv that installed one extra of the meta package from an index:
build, serialize and parse a message, and check which build was installed.

Usage: consumer_release.py grpcio|betterproto DISTRIBUTION SOURCE_COMMIT"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys


def main() -> int:
    flavour, distribution, commit = sys.argv[1:4]
    schema = json.loads(
        importlib.metadata.distribution(distribution).read_text("extra_metadata/schema.json") or ""
    )
    if schema.get("source_commit") != commit:
        print(f"installed {distribution} is not this build: {schema}")
        return 1
    if flavour == "grpcio":
        order_pb2 = importlib.import_module("acme.orders.v1.order_pb2")
        order = order_pb2.Order(id="o-1", state=order_pb2.Order.STATE_PAID)
        order.lines.add(product_id="p-1", quantity=3)
        data = order.SerializeToString()
        same = order_pb2.Order.FromString(data) == order
        other = importlib.util.find_spec("acme_protos_betterproto")
    else:
        orders = importlib.import_module("acme_protos_betterproto.acme.orders.v1")
        Order, OrderLine, OrderState = orders.Order, orders.OrderLine, orders.OrderState
        order = Order(
            id="o-1", state=OrderState.PAID, lines=[OrderLine(product_id="p-1", quantity=3)]
        )
        data = bytes(order)
        same = Order.parse(data) == order
        other = importlib.util.find_spec("acme")
    if not same or not data:
        print("round trip changed the message")
        return 1
    if other is not None:
        print(f"the {flavour} extra also installed the other flavour: {other.name}")
        return 1
    print(f"{flavour}: {len(data)} bytes round-tripped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
