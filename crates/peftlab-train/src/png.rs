//! PNG copies of the table plots, rendered from the same SVG (resvg; feature `png`, on by
//! default).
//!
//! Text uses the machine's installed fonts (the SVGs ask for DejaVu Sans, Liberation Sans,
//! Arial or Helvetica, then the generic sans-serif). On a machine without any font the PNG still
//! has every bar and line, but no labels: [`fonts_available`] says which case applies, and
//! `reproduce` prints a warning.

use std::sync::{Arc, OnceLock};

use resvg::{tiny_skia, usvg};

use crate::TrainError;

/// Pixels per SVG unit in the PNG (2: sharp on high-density screens and in papers).
pub const SCALE: f32 = 2.0;

fn fontdb() -> Arc<usvg::fontdb::Database> {
    static DB: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_system_fonts();
        // the generic family resolves to the first of these that is installed
        for family in ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"] {
            let query = usvg::fontdb::Query {
                families: &[usvg::fontdb::Family::Name(family)],
                ..Default::default()
            };
            if db.query(&query).is_some() {
                db.set_sans_serif_family(family);
                break;
            }
        }
        Arc::new(db)
    })
    .clone()
}

/// Whether any system font was found (without one, PNG plots have no text).
pub fn fonts_available() -> bool {
    !fontdb().is_empty()
}

/// Render an SVG document to PNG bytes at [`SCALE`] pixels per unit.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>, TrainError> {
    let opt = usvg::Options {
        fontdb: fontdb(),
        ..Default::default()
    };
    let tree = usvg::Tree::from_str(svg, &opt)
        .map_err(|e| TrainError::Other(format!("plot SVG does not parse: {e}")))?;
    let size = tree.size().to_int_size().scale_by(SCALE).ok_or_else(|| {
        TrainError::Other(format!("plot SVG has an unusable size {:?}", tree.size()))
    })?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| TrainError::Other(format!("cannot allocate a {size:?} image")))?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(SCALE, SCALE),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| TrainError::Other(format!("PNG encoding failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decoded pixels of a PNG (RGBA) and its size.
    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        let p = tiny_skia::Pixmap::decode_png(png).unwrap();
        (p.width(), p.height(), p.data().to_vec())
    }

    /// Dark pixels inside the rectangle `[x0, x1) × [y0, y1)` (PNG pixel coordinates).
    fn dark(img: &(u32, u32, Vec<u8>), (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
        let (w, _, px) = img;
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| ((y * w + x) * 4) as usize))
            .filter(|&i| px[i] < 128 && px[i + 1] < 128 && px[i + 2] < 128)
            .count()
    }

    /// The PNG is the SVG at twice the size, a filled rectangle lands where the SVG puts it,
    /// and text is drawn when the machine has fonts.
    #[test]
    fn renders_shapes_and_text_at_scale() {
        let svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100\" height=\"50\" \
             font-family=\"{}\" font-size=\"11\">\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
             <rect x=\"10\" y=\"10\" width=\"20\" height=\"20\" fill=\"black\"/>\
             <text x=\"50\" y=\"30\">Ag</text></svg>",
            crate::table::FONTS
        );
        let img = decode(&svg_to_png(&svg).unwrap());
        assert_eq!((img.0, img.1), (200, 100));
        assert_eq!(dark(&img, (20, 60), (20, 60)), 40 * 40, "the black square");
        assert_eq!(dark(&img, (0, 20), (0, 100)), 0, "left margin stays white");
        let text = dark(&img, (100, 140), (30, 70));
        if fonts_available() {
            assert!(text > 20, "text drew {text} dark pixels");
        } else {
            eprintln!("no system fonts: text not checked");
        }
    }

    #[test]
    fn malformed_svg_is_an_error() {
        let e = svg_to_png("<svg").unwrap_err().to_string();
        assert!(e.contains("does not parse"), "{e}");
    }
}
