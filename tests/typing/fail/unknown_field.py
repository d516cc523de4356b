"""A field the message does not have, in each flavour."""

from acme.orders.v1 import order_pb2
from acme_protos_betterproto.acme.orders.v1 import Order

order_pb2.Order(no_such_field="x")
_ = order_pb2.Order().no_such_field
Order(no_such_field="x")
_ = Order().no_such_field
