"""The README's composition example: parts by name, one task of each kind, results back."""

import asyncio

from kew_plug import Queue, Worker


async def fetch_price(item: str) -> float:
    return {"apple": 0.5, "pear": 0.75}[item]


def shout(text: str) -> str:
    return text.upper()


async def main() -> None:
    queue = Queue("memory", "cloudpickle", "local", name="shop")
    rate = 1.2
    with_tax = await queue.submit(lambda price: round(price * rate, 2), (10.0,))  # a closure
    price = await queue.submit(fetch_price, ("pear",), priority=5)
    loud = await queue.submit(shout, kwargs={"text": "done"}, delay=0.1)
    await Worker(queue, concurrency=4).drain()
    print(await with_tax.result(), await price.result(), await loud.result())
    await queue.aclose()


asyncio.run(main())
