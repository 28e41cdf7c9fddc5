# /etc/agentid/composer.hcl — the composer's plugin_data_file.
server_api_socket = "/tmp/spire-server/private/api.sock"  # this server's own socket_path
extension_oid     = "1.3.6.1.4.1.32473.1.1"               # set your own under your PEN, in verifiers too
trust_domains     = []                                    # extra trust domains allowed in chains
cache_ttl         = "5s"                                  # how long an entry lookup is reused
negative_cache_ttl = "1s"                                 # how long "no such task" (revoked) is remembered
cache_size        = 10000                                 # entries kept (about 0.9 KiB each)
