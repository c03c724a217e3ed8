function transform(event, config) {
  const order = event.data;
  const minimum = config.minimum ?? 100;
  if (event.type !== "order.created" || order.total < minimum) {
    return skip(`not a large order: ${event.type}, total ${order.total}`);
  }
  return {
    order: order.id,
    customer: order.customer.email,
    total: order.total,
    items: order.items.map(({ sku, qty }) => ({ sku, qty })),
    vip: order.customer.tags.includes("vip"),
  };
}
