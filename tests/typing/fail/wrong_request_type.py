"""An RPC called with another method's request type, with each client."""

import grpc
import grpclib.client
from acme.orders.v1 import order_service_pb2, order_service_pb2_grpc
from acme_protos_betterproto.acme.orders.v1 import (
    DeleteOrderRequest,
    OrderServiceAsyncStub,
    OrderServiceStub,
)

channel = grpc.insecure_channel("127.0.0.1:1")
order_service_pb2_grpc.OrderServiceStub(channel).GetOrder(order_service_pb2.DeleteOrderRequest())
OrderServiceStub(channel).get_order(DeleteOrderRequest())


async def call() -> None:
    stub = OrderServiceAsyncStub(grpclib.client.Channel("127.0.0.1", 1))
    await stub.get_order(DeleteOrderRequest())
