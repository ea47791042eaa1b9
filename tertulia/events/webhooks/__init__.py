"""Store webhooks in their own formats (Shopify, WooCommerce), verified, deduplicated and mapped to native events."""
