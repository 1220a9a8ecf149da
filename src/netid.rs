//! Which network the machine is on, as far as the adaptive keep-alive needs to know: learned
//! idle timeouts are remembered per network.
//!
//! The identity is the default route: its gateway address and outgoing interface (Linux:
//! `/proc/net/route`, then `/proc/net/ipv6_route`), e.g. `gw 192.168.1.1 dev wlan0`. That
//! tells apart cable and Wi-Fi, a VPN (its own default route) and most networks (different
//! gateway addresses). The Wi-Fi SSID is not used: reading it needs NetworkManager's D-Bus API
//! or nl80211, which not every system has, and two networks sharing gateway address and
//! interface (two homes, both `192.168.1.1` on `wlan0`) only cost a relearn when the first
//! learned value fails: the main session falls back to the floor at once and learns again.
//! Without a default route the identity is `no default route`; on other platforms `unknown`.

/// The current network's identity (see the module documentation).
pub fn current() -> String {
    #[cfg(target_os = "linux")]
    {
        let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        if let Some(id) = from_route_table(&v4) {
            return id;
        }
        let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
        if let Some(id) = from_ipv6_route_table(&v6) {
            return id;
        }
        "no default route".into()
    }
    #[cfg(not(target_os = "linux"))]
    {
        "unknown".into()
    }
}

/// The default route with the lowest metric from `/proc/net/route`.
pub fn from_route_table(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            if flags & 1 == 0 {
                return None; // not up
            }
            let gw = u32::from_str_radix(f[2], 16).ok()?;
            let metric: u32 = f[6].parse().ok()?;
            // The kernel prints the address in host byte order of a little-endian u32.
            let ip = std::net::Ipv4Addr::from(gw.swap_bytes());
            Some((metric, format!("gw {ip} dev {}", f[0])))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, id)| id)
}

/// The default route with the lowest metric from `/proc/net/ipv6_route`.
pub fn from_ipv6_route_table(table: &str) -> Option<String> {
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // dest plen src splen nexthop metric refcnt use flags iface
            if f.len() < 10 || f[0] != "0".repeat(32) || f[1] != "00" || f[9] == "lo" {
                return None;
            }
            let hop = u128::from_str_radix(f[4], 16).ok()?;
            let metric = u32::from_str_radix(f[5], 16).ok()?;
            let ip = std::net::Ipv6Addr::from(hop);
            Some((metric, format!("gw {ip} dev {}", f[9])))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_with_lowest_metric() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(from_route_table(table).unwrap(), "gw 10.0.0.1 dev eth0");
        let only_subnet = "Iface\tDestination\tGateway\n\
            eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(from_route_table(only_subnet), None);
    }

    #[test]
    fn ipv6_default_route() {
        let table = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0\n\
            00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(
            from_ipv6_route_table(table).unwrap(),
            "gw fe80::1 dev wlan0"
        );
    }
}
