/**
 * The synonym table: which uploaded columns the app recognises as malaria risk variables, under
 * which names, with the direction of their relation to risk and the source of that direction.
 *
 * A column matches a variable when its name, split into words (at `_`, spaces, punctuation and
 * lower-to-upper case changes) and lower-cased, has the same words as one synonym in any order
 * (`tpr_u5`, `u5_tpr`, `TPR U5` are one name), or the same letters and digits once separators
 * are removed (`PfPR` = `pfpr`). The table is documented in app/README.md ("Variables the app
 * recognises"); tests/app/analysis-formulas.test.ts checks the synonyms the README lists.
 *
 * Kinds:
 * - `burden`: a measure of malaria itself (test positivity, parasite rate, incidence). The
 *   ranking is a malaria risk ranking only when at least one is among the indicators.
 * - `covariate`: an environmental or structural factor of transmission.
 * - `size`: population and area. A size, not a risk: never chosen by default (a ward is not at
 *   higher malaria risk because it is larger).
 */
import type { Direction } from './indicators.ts';

export type VariableKind = 'burden' | 'covariate' | 'size';

/** One recognised variable of the synonym table. */
export interface KnownVariable {
  /** Stable id (e.g. `u5_tpr`). */
  id: string;
  /** What analysts call it. */
  label: string;
  kind: VariableKind;
  /** Relation to risk; null for size measures (no direction: they are not risks). */
  direction: Direction | null;
  /** Accepted column names (compared as described in the module comment). */
  synonyms: readonly string[];
  /** Where the direction (or the exclusion) comes from. */
  source: string;
}

/** Source of the direction of burden measures. */
export const BURDEN_SOURCE =
  'WHO, Malaria surveillance, monitoring & evaluation: a reference manual (Geneva, 2018): test positivity rate, ' +
  'parasite prevalence and case incidence are measures of malaria burden, so a higher value means more malaria';
/** Source of the direction of environmental and structural covariates. */
export const COVARIATE_SOURCE =
  'app convention (app/README.md, "Variables the app recognises"), kept from the incident app\'s defaults: ' +
  'the assumed direction of this factor on transmission, not a measured effect; choose the direction in the request when local evidence differs';
/** Source of the rule that size measures are never defaults. */
export const SIZE_SOURCE = 'app rule (app/README.md): population and area measure size, not risk; never a default indicator';

function burden(id: string, label: string, synonyms: string[]): KnownVariable {
  return { id, label, kind: 'burden', direction: 'positive', synonyms, source: BURDEN_SOURCE };
}
function covariate(id: string, label: string, direction: Direction, synonyms: string[]): KnownVariable {
  return { id, label, kind: 'covariate', direction, synonyms, source: COVARIATE_SOURCE };
}
function size(id: string, label: string, synonyms: string[]): KnownVariable {
  return { id, label, kind: 'size', direction: null, synonyms, source: SIZE_SOURCE };
}

/** The synonym table. Order matters only for display; no synonym appears twice (a test checks). */
export const KNOWN_VARIABLES: readonly KnownVariable[] = [
  burden('u5_tpr', 'test positivity rate, children under 5', [
    'u5_tpr_rdt',
    'u5_tpr',
    'u5_tpr_micro',
    'u5_tpr_microscopy',
    'under5_tpr',
    'under_5_tpr',
    'under_five_tpr',
    'tpr_under5',
    'tpr_under_five',
    'u5_test_positivity_rate',
    'under5_test_positivity_rate',
    'u5_positivity_rate',
  ]),
  burden('tpr', 'test positivity rate', ['tpr', 'tpr_rdt', 'tpr_micro', 'tpr_microscopy', 'test_positivity_rate', 'positivity_rate', 'malaria_tpr', 'tpr_all_ages']),
  burden('pfpr', 'Plasmodium falciparum parasite rate', [
    'pfpr',
    'pfpr_2_10',
    'pfpr2_10',
    'parasite_rate',
    'parasite_prevalence',
    'malaria_prevalence',
    'pf_prevalence',
  ]),
  burden('incidence', 'malaria case incidence (per 1000)', [
    'incidence',
    'malaria_incidence',
    'case_incidence',
    'incidence_per_1000',
    'cases_per_1000',
    'annual_incidence',
    'crude_incidence',
    'adjusted_incidence',
  ]),
  covariate('rainfall', 'rainfall', 'positive', ['mean_rainfall', 'rainfall', 'avg_rainfall', 'annual_rainfall', 'precipitation', 'rain']),
  covariate('flood', 'flood extent', 'positive', ['flood', 'flooding', 'flood_extent']),
  covariate('ndwi', 'water index (NDWI)', 'positive', ['ndwi', 'mean_ndwi']),
  covariate('ndmi', 'moisture index (NDMI)', 'positive', ['ndmi', 'mean_ndmi']),
  covariate('soil_wetness', 'soil wetness', 'positive', ['mean_soil_wetness', 'soil_wetness', 'soil_moisture']),
  covariate('evi', 'vegetation index (EVI)', 'positive', ['mean_evi', 'evi']),
  covariate('ndvi', 'vegetation index (NDVI)', 'positive', ['mean_ndvi', 'ndvi', 'ndvi_score']),
  covariate('humidity', 'relative humidity', 'positive', ['rh_mean', 'mean_rh', 'humidity', 'relative_humidity']),
  covariate('temperature', 'temperature', 'positive', ['temp_mean', 'mean_temp', 'temperature', 'mean_temperature']),
  covariate('distance_to_clinic', 'distance to a health facility', 'positive', [
    'dist_to_clinic',
    'distance_to_clinic',
    'distance_to_health_facility',
    'dist_to_hf',
  ]),
  covariate('distance_to_water', 'distance to water', 'negative', ['distance_to_water', 'dist_to_water', 'water_distance']),
  covariate('housing_quality', 'housing quality', 'negative', ['housing_quality', 'avg_house_score', 'house_score', 'housing_score']),
  covariate('elevation', 'elevation', 'negative', ['elevation', 'altitude', 'mean_elevation']),
  covariate('urban_percentage', 'urban share', 'negative', ['urban_percentage', 'urban_percent', 'urban_pct', 'percent_urban']),
  covariate('night_lights', 'night-time lights', 'negative', ['avg_rad', 'night_time_lights', 'nighttime_lights', 'ntl']),
  covariate('building_height', 'building height', 'negative', ['building_height', 'mean_building_height']),
  size('population', 'population', ['population', 'pop', 'total_population', 'population_count']),
  size('area', 'area', ['total_area', 'area', 'urban_area', 'area_km2', 'area_sqkm']),
];

/** The words of a column name: split at separators and lower-to-upper changes, lower-cased. */
export function nameWords(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

const byWords = new Map<string, { variable: KnownVariable; synonym: string }>();
const byCompact = new Map<string, { variable: KnownVariable; synonym: string }>();
for (const variable of KNOWN_VARIABLES) {
  for (const synonym of variable.synonyms) {
    const words = nameWords(synonym);
    byWords.set([...words].sort().join(' '), { variable, synonym });
    byCompact.set(words.join(''), { variable, synonym });
  }
}

/** A column recognised by the synonym table, and the synonym it matched. */
export interface VariableMatch {
  variable: KnownVariable;
  synonym: string;
}

/**
 * Recognise a column name.
 * @returns the variable and the synonym that matched, or null when the name is not in the table.
 */
export function matchVariable(column: string): VariableMatch | null {
  const words = nameWords(column);
  if (words.length === 0) return null;
  return byWords.get([...words].sort().join(' ')) ?? byCompact.get(words.join('')) ?? null;
}
