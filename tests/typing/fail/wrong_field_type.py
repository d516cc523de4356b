"""A field given a value of the wrong type, in each flavour."""

from acme.orders.v1 import order_pb2
from acme_protos_betterproto.acme.orders.v1 import Order

order_pb2.Order(id=1)
order_pb2.Order(lines=["not a line"])
Order(id=1)
Order(lines=["not a line"])
