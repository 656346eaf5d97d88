//! The synthetic library: genres, title popularity, works and borrower tastes.
//!
//! Everything here is a pure function of the parameters and small per-genre
//! tables, so any chunk of loans can be generated on any thread without shared
//! mutable state, and memory does not grow with the number of loans.

use crate::SynthParams;
use crate::ids::{mix, unit};
use crate::zipf::Zipf;

/// Exponent of genre popularity by genre rank: a few big genres, many niches.
const GENRE_EXPONENT: f64 = 0.6;
/// Zipf exponent of title popularity within a genre for most borrowers.
const TITLE_EXPONENT: f64 = 1.0;
/// Flatter exponent for the most active borrowers, who read deeper into the
/// long tail (and would otherwise re-borrow the bestsellers dozens of times).
const EXPLORER_EXPONENT: f64 = 0.75;
/// Share of borrowers, by activity rank, that explore the long tail.
const EXPLORER_SHARE: f64 = 0.02;
/// Zipf exponent of borrower activity.
const BORROWER_EXPONENT: f64 = 1.0;
/// Mandelbrot offset of borrower activity as a share of the borrower count;
/// scaling it with the count keeps the activity shape the same at any size
/// (the busiest borrower makes about 21 times the mean number of loans).
const BORROWER_OFFSET: f64 = 0.01;
/// Probability that a loan comes from one of the borrower's favourite genres.
pub(crate) const TASTE: f64 = 0.85;

/// Names of the synthetic branches; noise that the extractor drops.
pub(crate) const BRANCHES: [&str; 8] = [
    "central",
    "riverside",
    "northgate",
    "oakfield",
    "harbour",
    "millbrook",
    "eastend",
    "hillcrest",
];
/// Cumulative share of borrowers whose home is each branch.
const BRANCH_CUM: [f64; 8] = [0.30, 0.48, 0.62, 0.73, 0.82, 0.89, 0.95, 1.0];

/// Keys for the independent random streams, all derived from the seed.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    pub(crate) borrower_id: u64,
    pub(crate) title_id: u64,
    pub(crate) work_id: u64,
    pub(crate) works: u64,
    pub(crate) profile: u64,
    pub(crate) chacha: [u8; 32],
}

impl Keys {
    /// Domain-separated keys, so that e.g. borrower and title ids of the same
    /// index are unrelated.
    pub(crate) fn new(seed: u64) -> Self {
        let k = |domain: u64| mix(mix(seed) ^ mix(domain));
        let mut chacha = [0u8; 32];
        for (n, c) in chacha.chunks_exact_mut(8).enumerate() {
            c.copy_from_slice(&k(0x100 + n as u64).to_le_bytes());
        }
        Keys {
            borrower_id: k(1),
            title_id: k(2),
            work_id: k(3),
            works: k(4),
            profile: k(5),
            chacha,
        }
    }
}

/// Genres laid out as contiguous blocks of title indices, most popular first
/// within each block.
#[derive(Clone, Debug)]
pub(crate) struct Catalogue {
    /// First title index of each genre, plus the title count at the end.
    starts: Vec<u32>,
    /// Cumulative popularity share of the genres.
    genre_cum: Vec<f64>,
    mainstream: Vec<Zipf>,
    explorer: Vec<Zipf>,
    works_key: u64,
}

impl Catalogue {
    /// The catalogue of valid parameters (`1 <= genres <= titles`).
    pub(crate) fn new(params: &SynthParams, keys: &Keys) -> Self {
        let g = params.genres as usize;
        let weights: Vec<f64> = (0..g)
            .map(|k| (k as f64 + 1.0).powf(-GENRE_EXPONENT))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut genre_cum = Vec::with_capacity(g);
        let mut acc = 0.0;
        for w in &weights {
            acc += w;
            genre_cum.push(acc / total);
        }
        // Every genre gets one title, the rest is shared by popularity.
        let extra = f64::from(params.titles - params.genres);
        let mut starts = Vec::with_capacity(g + 1);
        starts.push(0);
        for k in 1..g {
            let share = (extra * genre_cum[k - 1]).floor() as u32;
            starts.push(k as u32 + share.min(params.titles - params.genres));
        }
        starts.push(params.titles);
        let sizes: Vec<u32> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        Catalogue {
            mainstream: sizes
                .iter()
                .map(|&n| Zipf::new(n, TITLE_EXPONENT, 1.0))
                .collect(),
            explorer: sizes
                .iter()
                .map(|&n| Zipf::new(n, EXPLORER_EXPONENT, 1.0))
                .collect(),
            starts,
            genre_cum,
            works_key: keys.works,
        }
    }

    /// Number of genres.
    pub(crate) fn genres(&self) -> u32 {
        self.genre_cum.len() as u32
    }

    /// The genre of title `j`.
    pub(crate) fn genre_of(&self, j: u32) -> u32 {
        (self.starts.partition_point(|&s| s <= j) - 1) as u32
    }

    /// A genre drawn by overall popularity.
    pub(crate) fn pick_genre(&self, u: f64) -> u32 {
        (self.genre_cum.partition_point(|&c| c <= u) as u32).min(self.genres() - 1)
    }

    /// A title of genre `g` drawn by popularity.
    pub(crate) fn pick_title(&self, g: u32, explorer: bool, u: f64) -> u32 {
        let z = if explorer {
            &self.explorer[g as usize]
        } else {
            &self.mainstream[g as usize]
        };
        self.starts[g as usize] + z.rank(u)
    }

    /// The title that `j` is an edition or translation of, if any: about 10%
    /// of titles, never the most popular of a genre, always pointing to a more
    /// popular title of the same genre.
    pub(crate) fn original_of(&self, j: u32) -> Option<u32> {
        let start = self.starts[self.genre_of(j) as usize];
        let rank = j - start;
        let h = mix(self.works_key ^ u64::from(j));
        (rank > 0 && h.is_multiple_of(10)).then(|| start + (mix(h) % u64::from(rank)) as u32)
    }

    /// The first title of the work that `j` belongs to; ranks strictly
    /// decrease along `original_of`, so the walk ends.
    pub(crate) fn work_root(&self, mut j: u32) -> u32 {
        while let Some(o) = self.original_of(j) {
            j = o;
        }
        j
    }
}

/// Borrower activity and tastes.
#[derive(Clone, Debug)]
pub(crate) struct Borrowers {
    activity: Zipf,
    explorers: u32,
    key: u64,
}

/// What a borrower likes, derived from their index alone.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Profile {
    favourites: [u32; 3],
    favourite_cum: [f64; 3],
    count: usize,
    /// Index into [`BRANCHES`] of the borrower's home branch.
    pub(crate) branch: u8,
    /// Whether the borrower reads deep into the long tail.
    pub(crate) explorer: bool,
    seed: u64,
}

impl Borrowers {
    /// The borrower model of valid parameters.
    pub(crate) fn new(params: &SynthParams, keys: &Keys) -> Self {
        let n = params.borrowers;
        Borrowers {
            activity: Zipf::new(
                n,
                BORROWER_EXPONENT,
                (BORROWER_OFFSET * f64::from(n)).max(1.0),
            ),
            explorers: (EXPLORER_SHARE * f64::from(n)).ceil() as u32,
            key: keys.profile,
        }
    }

    /// A borrower drawn by activity; index 0 is the most active.
    pub(crate) fn pick(&self, u: f64) -> u32 {
        self.activity.rank(u)
    }

    /// The tastes of borrower `b`: 1 to 3 distinct favourite genres, chosen by
    /// genre popularity, and a home branch.
    pub(crate) fn profile(&self, cat: &Catalogue, b: u32) -> Profile {
        let seed = mix(self.key ^ u64::from(b));
        let mut h = seed;
        let mut next = || {
            h = mix(h);
            unit(h)
        };
        let u = next();
        let wanted = if u < 0.35 {
            1
        } else if u < 0.75 {
            2
        } else {
            3
        };
        let mut favourites = [0u32; 3];
        let mut count = 0;
        // Retry a few times for a distinct genre; a borrower of a tiny
        // catalogue may end up with fewer favourites than wanted.
        for _ in 0..wanted * 8 {
            if count == wanted {
                break;
            }
            let g = cat.pick_genre(next());
            if !favourites[..count].contains(&g) {
                favourites[count] = g;
                count += 1;
            }
        }
        let favourite_cum = match count {
            1 => [1.0, 1.0, 1.0],
            2 => [0.6, 1.0, 1.0],
            _ => [0.5, 0.8, 1.0],
        };
        let u = next();
        let branch = BRANCH_CUM.iter().position(|&c| u < c).unwrap_or(0) as u8;
        Profile {
            favourites,
            favourite_cum,
            count,
            branch,
            explorer: b < self.explorers,
            seed,
        }
    }
}

impl Profile {
    /// One of the favourite genres, the first ones more often.
    pub(crate) fn favourite(&self, u: f64) -> u32 {
        let k = self.favourite_cum[..self.count]
            .iter()
            .position(|&c| u < c)
            .unwrap_or(0);
        self.favourites[k]
    }

    /// The favourite genres.
    #[cfg(test)]
    pub(crate) fn favourites(&self) -> &[u32] {
        &self.favourites[..self.count]
    }

    /// One of the borrower's two comfort reads, which they borrow again and
    /// again: the source of deliberate repeat loans.
    pub(crate) fn comfort_title(&self, cat: &Catalogue, slot: u32) -> u32 {
        let h = mix(self.seed ^ (0xc0f0 + u64::from(slot)));
        let g = self.favourites[slot as usize % self.count];
        cat.pick_title(g, self.explorer, unit(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo_params;

    #[test]
    fn genres_tile_the_titles_and_shrink() {
        let p = demo_params();
        let cat = Catalogue::new(&p, &Keys::new(p.seed));
        assert_eq!(cat.starts.len(), p.genres as usize + 1);
        assert_eq!(*cat.starts.last().unwrap(), p.titles);
        let sizes: Vec<u32> = cat.starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(sizes.iter().all(|&s| s >= 1));
        assert!(sizes[0] > 2 * sizes[sizes.len() - 1], "{sizes:?}");
        for (g, w) in cat.starts.windows(2).enumerate() {
            assert_eq!(cat.genre_of(w[0]), g as u32);
            assert_eq!(cat.genre_of(w[1] - 1), g as u32);
        }
    }

    #[test]
    fn every_genre_has_a_title_even_when_genres_equal_titles() {
        let mut p = demo_params();
        p.titles = 12;
        let cat = Catalogue::new(&p, &Keys::new(p.seed));
        assert_eq!(cat.starts, (0..=12).collect::<Vec<u32>>());
    }

    #[test]
    fn originals_are_more_popular_titles_of_the_same_genre() {
        let p = demo_params();
        let cat = Catalogue::new(&p, &Keys::new(p.seed));
        let mut derived = 0;
        for j in 0..p.titles {
            if let Some(o) = cat.original_of(j) {
                derived += 1;
                assert!(o < j);
                assert_eq!(cat.genre_of(o), cat.genre_of(j));
            }
            let root = cat.work_root(j);
            assert_eq!(cat.original_of(root), None);
        }
        // About 10% of the titles, with slack for chance.
        assert!((100..220).contains(&derived), "{derived} derived titles");
    }

    #[test]
    fn profiles_have_distinct_favourites() {
        let p = demo_params();
        let keys = Keys::new(p.seed);
        let cat = Catalogue::new(&p, &keys);
        let bs = Borrowers::new(&p, &keys);
        let mut counts = [0u32; 4];
        for b in 0..p.borrowers {
            let pr = bs.profile(&cat, b);
            let f = pr.favourites();
            counts[f.len()] += 1;
            assert!(f.iter().all(|&g| g < p.genres));
            assert!((1..f.len()).all(|k| !f[..k].contains(&f[k])));
            assert!(f.contains(&pr.favourite(0.99)));
        }
        assert!(
            counts[1] > 0 && counts[2] > 0 && counts[3] > 0,
            "{counts:?}"
        );
    }
}
