"""A typed consumer of both flavours: `mypy --strict` must accept it and agree with every
`assert_type` (tests/test_typing.py). It names the example module's messages on purpose: it is
what a user of these packages writes."""

from __future__ import annotations

import datetime
from typing import Any

import grpc
import grpclib.client
from acme.orders.v1 import order_pb2, order_service_pb2, order_service_pb2_grpc
from acme_protos_betterproto.acme.orders.v1 import (
    GetOrderRequest,
    GetOrderResponse,
    Order,
    OrderLine,
    OrderServiceAsyncStub,
    OrderServiceStub,
    OrderState,
)
from typing_extensions import assert_type

# grpcio flavour: protoc messages typed by mypy-protobuf, stubs by mypy_grpc.
order = order_pb2.Order(id="o-1", state=order_pb2.Order.STATE_PAID)
assert_type(order.id, str)
assert_type(order.loyalty_points_delta, int)
assert_type(order.state, order_pb2.Order.State.ValueType)
assert_type(order.lines[0], order_pb2.Order.Line)
assert_type(order.HasField("gift_message"), bool)
assert_type(order.SerializeToString(), bytes)
assert_type(order_pb2.Order.FromString(b""), order_pb2.Order)

stub = order_service_pb2_grpc.OrderServiceStub(grpc.insecure_channel("127.0.0.1:1"))
request = order_service_pb2.GetOrderRequest(id="o-1")


def call_grpcio() -> order_service_pb2.GetOrderResponse:
    return stub.GetOrder(request, timeout=1.0)


# betterproto flavour: dataclasses, well-known types as Python values.
better = Order(id="o-1", state=OrderState.PAID, lines=[OrderLine(sku="s")])
assert_type(better.id, str)
assert_type(better.state, OrderState)
assert_type(better.lines, list[OrderLine])
assert_type(better.create_time, datetime.datetime | None)
assert_type(better.delivery_window, datetime.timedelta | None)
assert_type(better.gift_message, str | None)
assert_type(Order.parse(bytes(better)), Order)
assert_type(better.to_dict(), dict[str, Any])


def call_betterproto_sync() -> GetOrderResponse:
    sync = OrderServiceStub(grpc.insecure_channel("127.0.0.1:1"))
    return sync.get_order(GetOrderRequest(id="o-1"))


async def call_betterproto_async() -> GetOrderResponse:
    channel = grpclib.client.Channel("127.0.0.1", 1)
    response = await OrderServiceAsyncStub(channel).get_order(GetOrderRequest(id="o-1"), timeout=1)
    assert_type(response, GetOrderResponse)
    return response


# The same bytes are the same message in both flavours.
same: order_pb2.Order = order_pb2.Order.FromString(bytes(Order.parse(order.SerializeToString())))
