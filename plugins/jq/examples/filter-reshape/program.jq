if .type != "order.created" or .data.total < 100 then
  skip("not a large order: \(.type), total \(.data.total)")
else
  {
    order: .data.id,
    customer: .data.customer.email,
    total: .data.total,
    items: [.data.items[] | {sku, qty}],
    vip: (.data.customer.tags | index("vip") != null)
  }
end
