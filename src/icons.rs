//! The tray icons, drawn in code so they are crisp at every size the panels ask for (16–64 px)
//! and readable on light and dark panels: a white envelope with a dark outline, and a coloured
//! status badge with a white ring. `assets/icons/*.png` are these drawings at 32 px (a test
//! keeps them in sync: `UPDATE_ICONS=1 cargo test icons` rewrites them).

/// What the icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IconState {
    /// Connected and idle: green badge.
    Connected,
    /// New mail since the user last looked: blue badge with the count (9+ above nine).
    NewMail(u32),
    /// An account cannot connect: red badge with "!".
    Error,
    /// Keep-alive is switched off: grey badge with a bar.
    KeepAliveOff,
    /// Connecting or reconnecting: amber badge with a dot.
    Connecting,
}

impl IconState {
    #[cfg(test)]
    pub fn file_stem(self) -> &'static str {
        match self {
            IconState::Connected => "connected",
            IconState::NewMail(_) => "new-mail",
            IconState::Error => "error",
            IconState::KeepAliveOff => "keepalive-off",
            IconState::Connecting => "connecting",
        }
    }
}

type Rgba = [f32; 4];

const OUTLINE: Rgba = [0.20, 0.22, 0.25, 1.0];
const PAPER: Rgba = [0.97, 0.97, 0.97, 1.0];
const WHITE: Rgba = [1.0, 1.0, 1.0, 1.0];

/// 3×5 glyphs for the badge: digits, '+', '!', '-', '.'.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b011, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '+' => [0b000, 0b010, 0b111, 0b010, 0b000],
        '!' => [0b010, 0b010, 0b010, 0b000, 0b010],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        '.' => [0b000, 0b000, 0b010, 0b000, 0b000],
        _ => [0; 5],
    }
}

fn badge(state: IconState) -> (Rgba, String) {
    match state {
        IconState::Connected => ([0.18, 0.62, 0.30, 1.0], String::new()),
        IconState::NewMail(n) => (
            [0.10, 0.45, 0.91, 1.0],
            if n > 9 {
                "9+".into()
            } else {
                n.max(1).to_string()
            },
        ),
        IconState::Error => ([0.85, 0.19, 0.15, 1.0], "!".into()),
        IconState::KeepAliveOff => ([0.50, 0.50, 0.52, 1.0], "-".into()),
        IconState::Connecting => ([0.95, 0.60, 0.0, 1.0], ".".into()),
    }
}

/// The icon as `size`×`size` RGBA bytes (straight alpha).
pub fn render(state: IconState, size: u32) -> Vec<u8> {
    let n = size as f32;
    let stroke = (n / 16.0).max(1.0);
    let (color, text) = badge(state);
    // Envelope, in pixels.
    let (ex0, ey0, ex1, ey1) = (0.06 * n, 0.18 * n, 0.94 * n, 0.80 * n);
    // Badge circle.
    let (bx, by, br) = (0.70 * n, 0.68 * n, 0.30 * n);
    let ring = (n / 20.0).max(1.0);
    let glyph_rows: Vec<[u8; 5]> = text.chars().map(glyph).collect();
    let cell = if glyph_rows.len() > 1 {
        br * 0.30
    } else {
        br * 0.36
    };
    let text_w = glyph_rows.len() as f32 * 4.0 * cell - cell;
    let (tx0, ty0) = (bx - text_w / 2.0, by - 2.5 * cell);

    let sample = |x: f32, y: f32| -> Rgba {
        let mut px = [0.0; 4];
        if x >= ex0 && x <= ex1 && y >= ey0 && y <= ey1 {
            let inner =
                x >= ex0 + stroke && x <= ex1 - stroke && y >= ey0 + stroke && y <= ey1 - stroke;
            px = if inner { PAPER } else { OUTLINE };
            if inner {
                // The flap: two lines from the top corners to the middle.
                let (mx, my) = ((ex0 + ex1) / 2.0, ey0 + (ey1 - ey0) * 0.55);
                for (ax, ay) in [(ex0, ey0), (ex1, ey0)] {
                    if segment_distance(x, y, ax, ay, mx, my) <= stroke / 2.0 {
                        px = OUTLINE;
                    }
                }
            }
        }
        let d = ((x - bx).powi(2) + (y - by).powi(2)).sqrt();
        if d <= br {
            px = if d > br - ring { WHITE } else { color };
            // Glyphs.
            if y >= ty0 && y < ty0 + 5.0 * cell && x >= tx0 {
                let col = ((x - tx0) / cell) as usize;
                let row = ((y - ty0) / cell) as usize;
                let (g, gx) = (col / 4, col % 4);
                if gx < 3
                    && g < glyph_rows.len()
                    && row < 5
                    && glyph_rows[g][row] & (0b100 >> gx) != 0
                {
                    px = WHITE;
                }
            }
        }
        px
    };

    // 4×4 supersampling for smooth edges.
    const SS: usize = 4;
    let mut out = Vec::with_capacity((size * size * 4) as usize);
    for py in 0..size {
        for px in 0..size {
            let mut acc = [0.0f32; 4];
            for sy in 0..SS {
                for sx in 0..SS {
                    let s = sample(
                        px as f32 + (sx as f32 + 0.5) / SS as f32,
                        py as f32 + (sy as f32 + 0.5) / SS as f32,
                    );
                    for c in 0..3 {
                        acc[c] += s[c] * s[3];
                    }
                    acc[3] += s[3];
                }
            }
            let a = acc[3] / (SS * SS) as f32;
            for c in 0..3 {
                let v = if acc[3] > 0.0 { acc[c] / acc[3] } else { 0.0 };
                out.push((v * 255.0).round() as u8);
            }
            out.push((a * 255.0).round() as u8);
        }
    }
    out
}

/// The icon as a PNG file's bytes.
pub fn png(state: IconState, size: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size, size);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("PNG header into memory");
    writer
        .write_image_data(&render(state, size))
        .expect("PNG data into memory");
    writer.finish().expect("PNG end");
    out
}

fn segment_distance(x: f32, y: f32, ax: f32, ay: f32, bx: f32, by: f32) -> f32 {
    let (dx, dy) = (bx - ax, by - ay);
    let t = (((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    ((x - ax - t * dx).powi(2) + (y - ay - t * dy).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [IconState; 5] = [
        IconState::Connected,
        IconState::NewMail(3),
        IconState::Error,
        IconState::KeepAliveOff,
        IconState::Connecting,
    ];

    fn pixel(img: &[u8], size: u32, x: u32, y: u32) -> [u8; 4] {
        let i = ((y * size + x) * 4) as usize;
        [img[i], img[i + 1], img[i + 2], img[i + 3]]
    }

    #[test]
    fn states_are_told_apart_by_the_badge_colour_at_every_size() {
        for size in [16, 22, 24, 32, 48, 64] {
            let centre = |s: IconState| {
                let img = render(s, size);
                assert_eq!(img.len(), (size * size * 4) as usize);
                // Left of the badge's centre: badge colour, not glyph.
                pixel(
                    &img,
                    size,
                    (size as f32 * 0.50) as u32,
                    (size as f32 * 0.68) as u32,
                )
            };
            let colours = [
                centre(IconState::Connected),
                centre(IconState::NewMail(3)),
                centre(IconState::Error),
                centre(IconState::KeepAliveOff),
                centre(IconState::Connecting),
            ];
            for (i, a) in colours.iter().enumerate() {
                assert_eq!(a[3], 255, "opaque badge at {size}px");
                for b in &colours[i + 1..] {
                    assert_ne!(a, b, "two states look alike at {size}px");
                }
            }
            // Corners stay transparent (no square on dark panels).
            assert_eq!(pixel(&render(IconState::Connected, size), size, 0, 0)[3], 0);
        }
    }

    /// `assets/icons/` holds these drawings, so packagers and docs show what users see.
    #[test]
    fn assets_match_the_drawings() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/icons");
        for state in STATES {
            for size in [16, 32, 64] {
                let path = dir.join(format!("{}-{size}.png", state.file_stem()));
                let png = png(state, size);
                if std::env::var_os("UPDATE_ICONS").is_some() {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, &png).unwrap();
                }
                let on_disk = std::fs::read(&path).unwrap_or_else(|_| {
                    panic!(
                        "{} missing: UPDATE_ICONS=1 cargo test icons",
                        path.display()
                    )
                });
                assert!(
                    on_disk == png,
                    "{} is out of date: UPDATE_ICONS=1 cargo test icons",
                    path.display()
                );
            }
        }
    }

    /// The share of the icon's pixels that stand out from a panel of colour `bg` (luminance
    /// apart by at least 96 of 255), the icon blended over the panel as the panel draws it.
    fn standing_out(img: &[u8], bg: [f32; 3]) -> f32 {
        let lum = |c: [f32; 3]| 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        let back = lum(bg);
        let pixels = img.chunks(4);
        let n = pixels.len() as f32;
        let out = pixels
            .filter(|p| {
                let a = p[3] as f32 / 255.0;
                let c = [0, 1, 2].map(|i| p[i] as f32 * a + bg[i] * (1.0 - a));
                (lum(c) - back).abs() >= 96.0
            })
            .count() as f32;
        out / n
    }

    /// One drawing for light and dark panels: on both, a good part of every state's icon
    /// stands out (the white envelope on dark panels, its dark outline and the badge on light
    /// ones).
    #[test]
    fn readable_on_light_and_dark_panels() {
        for size in [16, 22, 32, 48] {
            for state in STATES {
                let img = render(state, size);
                let light = standing_out(&img, [242.0, 242.0, 242.0]);
                let dark = standing_out(&img, [40.0, 40.0, 40.0]);
                eprintln!("{state:?} {size}px: light {light:.2} dark {dark:.2}");
                assert!(
                    light >= 0.12 && dark >= 0.12,
                    "{state:?} at {size}px: light {light:.2}, dark {dark:.2}"
                );
            }
        }
    }

    #[test]
    fn unread_count_changes_the_drawing() {
        assert_ne!(
            render(IconState::NewMail(1), 32),
            render(IconState::NewMail(2), 32)
        );
        assert_eq!(
            render(IconState::NewMail(10), 32),
            render(IconState::NewMail(99), 32),
            "9+"
        );
    }
}
