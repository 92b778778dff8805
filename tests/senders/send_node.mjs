// @segment/analytics-node at its default settings (only the write key, the host and the path are given;
// the library resolves the path against the host, so /_ps goes in the path):
// one identify and one "Order Completed" per order id, then closeAndFlush. Prints one JSON line:
// {"errors": [...], "delivered": n}. Usage: node send_node.mjs HOST PATH WRITE_KEY ORDERS_JSON CONTEXT_JSON
import { Analytics } from '@segment/analytics-node'

const [host, path, writeKey, ordersJson, contextsJson] = process.argv.slice(2)
const orders = JSON.parse(ordersJson)
const contexts = JSON.parse(contextsJson)
const analytics = new Analytics({ writeKey, host, path })
const errors = []
let delivered = 0
analytics.on('error', (error) => errors.push(String(error && (error.reason || error.message || error.code || error))))
analytics.on('http_request', () => {})
for (const order of orders) {
  analytics.identify({ userId: 'u-42', traits: { email: ' Jane.Doe@Example.com ' } })
  analytics.track({ userId: 'u-42', event: 'Order Completed', properties: order, context: contexts[order.order_id] },
    (error) => { if (error) { errors.push(String(error)) } else { delivered += 1 } })
}
await analytics.closeAndFlush({ timeout: 20000 })
console.log(JSON.stringify({ errors, delivered }))
