vcl 4.1;

# Varnish as the peer CDN edge for bench/cdn.sh: the origin at 127.0.0.1:18000 is the only
# backend and caching follows the origin's headers (the built-in VCL, which runs after
# these subroutines). Request coalescing (the waiting list) is Varnish's default.
#
# Started by bench/cdn.sh with `-a 127.0.0.1:18002 -s malloc,256m -p feature=+http2`
# (HTTP/1.1 and cleartext HTTP/2 with prior knowledge on the same port) and two thread
# pools sized for a 2-core box.

backend origin {
    .host = "127.0.0.1";
    .port = "18000";
    .connect_timeout = 2s;
    .first_byte_timeout = 10s;
    .between_bytes_timeout = 10s;
}

sub vcl_deliver {
    # Lets the script check that it measures hits (Varnish also sets Age and X-Varnish).
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
