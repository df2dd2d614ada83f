#!/usr/bin/env bash
# Synthetic voice anti-spoofing corpus for functional checks of the LCNN spoof detector (the real
# ASVspoof 2019 data is licensed). Bona fide speech is espeak-ng in 10 voices reading a fixed list
# of English sentences; each bona fide utterance also gets a "replayed" spoof: the same recording
# played through a simulated loudspeaker and re-recorded in a room (band limit, loudspeaker
# resonance, mild overdrive, reverb, re-recording noise). Everything is 16 kHz mono 16-bit.
#
#   scripts/spoof_corpus.sh OUT_DIR [--per-voice N] [--seed S] [--jobs J] [--install]
#
#   --per-voice N  sentences per voice, 1..72 (default 70: 980 train files, 420 test files)
#   --seed S       seed of the parameter RNG (default 2019); the same seed gives the same bytes
#   --jobs J       parallel sox/espeak-ng jobs (default: nproc)
#   --install      apt-get install the tools if missing (with sudo when not root)
#
# Layout (image-folder style, class = subfolder; test voices v08-v10 never occur in train):
#   OUT_DIR/train/bonafide/vVV_sSSS.wav   OUT_DIR/train/spoof/vVV_sSSS_replay.wav   (v01-v07)
#   OUT_DIR/test/bonafide/vVV_sSSS.wav    OUT_DIR/test/spoof/vVV_sSSS_replay.wav    (v08-v10)
#   A spoof file is named after the bona fide utterance it replays, plus "_replay".
#   OUT_DIR/asvspoof/flac/LA_T_1xxxxxx.flac (train), LA_E_2xxxxxx.flac (test): the same audio;
#   ids are a seeded shuffle, so neither id order nor parity tells the class.
#   OUT_DIR/asvspoof/protocols/{train,test}.txt: ASVspoof 2019 LA format
#     "SPEAKER_ID UTT_ID - SYSTEM_ID KEY", e.g. "LA_0001 LA_T_1000417 - - bonafide" and
#     "LA_0001 LA_T_1000032 - A01 spoof" (speaker LA_00VV = voice vVV, A01 = the replay channel).
#   OUT_DIR/asvspoof/utt_map.tsv: utt id -> wav path; OUT_DIR/params.tsv: per-utterance parameters.
#
# Determinism: espeak-ng output is deterministic; sox is run with -R (fixed seed for its noise
# generators) and -D (no dither), and each utterance's noise is a different window (random
# offset) of that fixed noise stream, so runs with the same seed are byte-identical. Parameters
# come from a 31-bit LCG in bash arithmetic (not $RANDOM, whose sequence changed across bash
# versions). Tested with espeak-ng 1.51 and SoX 14.4.2 (Debian bookworm); other versions of
# espeak-ng may render the voices differently.
set -euo pipefail

usage() { sed -n '7,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

out="" per_voice=70 seed=2019 jobs=$(nproc 2>/dev/null || echo 2) install=0
while (($#)); do
  case $1 in
    --per-voice) per_voice=${2:?--per-voice needs N}; shift 2 ;;
    --seed) seed=${2:?--seed needs S}; shift 2 ;;
    --jobs) jobs=${2:?--jobs needs J}; shift 2 ;;
    --install) install=1; shift ;;
    -h | --help) usage 0 ;;
    -*) echo "unknown option: $1" >&2; usage ;;
    *) [[ -z $out ]] || usage; out=$1; shift ;;
  esac
done
[[ -n $out ]] || usage
[[ $per_voice =~ ^[0-9]+$ && $seed =~ ^[0-9]+$ && $jobs =~ ^[1-9][0-9]*$ ]] || usage

# --- tools ---------------------------------------------------------------------------------------
apt_cmd="apt-get install -y espeak-ng sox libsox-fmt-all"
missing=()
for tool in espeak-ng sox soxi; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  if ((install)); then
    sudo=()
    if ((EUID != 0)); then command -v sudo >/dev/null && sudo=(sudo); fi
    "${sudo[@]}" apt-get update
    # shellcheck disable=SC2086
    "${sudo[@]}" $apt_cmd
  else
    echo "missing: ${missing[*]}; install with:" >&2
    echo "  $apt_cmd" >&2
    echo "(or rerun with --install)" >&2
    exit 1
  fi
fi
sox -h 2>/dev/null | grep -q 'AUDIO FILE FORMATS:.* flac' || {
  echo "sox lacks FLAC support; install with: $apt_cmd" >&2
  exit 1
}

# --- voices and sentences ------------------------------------------------------------------------
# vNN espeak-ng voice split. (In espeak-ng 1.51 "en-gb+VARIANT" ignores the variant; "en+VARIANT"
# and the other dialects honour it.)
voices=(
  "v01 en-us train"
  "v02 en+f3 train"
  "v03 en-gb-scotland+m3 train"
  "v04 en-029+f2 train"
  "v05 en-gb-x-rp+m7 train"
  "v06 en-us-nyc+f4 train"
  "v07 en-gb-x-gbclan+m5 train"
  "v08 en-gb-x-gbcwmd+f5 test"
  "v09 en-us+m4 test"
  "v10 en+f1 test"
)
sentences=(
  "The birch canoe slid on the smooth planks."
  "Open the window before the meeting starts."
  "Turn left at the old stone bridge."
  "She kept the letters in a wooden box."
  "Nobody expected the train to arrive early."
  "The soup was too hot to taste."
  "We walked along the beach until sunset."
  "Please bring two pencils and a ruler."
  "The kitten chased a ball of red yarn."
  "Rain fell softly on the tin roof all night."
  "He forgot his keys on the kitchen table."
  "Fresh bread smells wonderful in the morning."
  "The children laughed at the clever puppet."
  "A cold wind blew across the empty field."
  "My brother plays the violin every Sunday."
  "The library closes at nine tonight."
  "Several ducks were swimming in the pond."
  "Write your name at the top of the page."
  "The old clock stopped at half past three."
  "They painted the fence a bright shade of blue."
  "Her voice echoed through the long hallway."
  "Put the groceries away before dinner."
  "The pilot announced a short delay."
  "Green apples are my favourite snack."
  "The museum has a new exhibit on ancient maps."
  "Check the tyres before the long drive."
  "A small boat drifted slowly toward the shore."
  "The teacher smiled and closed her book."
  "Thunder rolled over the distant hills."
  "Let us meet again next Thursday afternoon."
  "The baker sold every loaf by noon."
  "Bright stars filled the clear winter sky."
  "He fixed the broken chair with some glue."
  "The garden needs water after this hot week."
  "Our flight leaves from gate twelve."
  "Nine orange lanterns hung above the door."
  "The river was wide and surprisingly calm."
  "Keep the receipt in case you need a refund."
  "She counted the coins twice to be sure."
  "Every spring the swallows return to the barn."
  "The engine made a strange rattling noise."
  "Add a pinch of salt to the boiling water."
  "The mountain path was steep and narrow."
  "I will send you the report tomorrow morning."
  "The dog barked at the passing bicycle."
  "Seven students finished the test early."
  "A gentle breeze moved the white curtains."
  "The shop on the corner sells fresh flowers."
  "Please speak slowly and clearly into the microphone."
  "The lamp flickered and then went dark."
  "Wool socks keep your feet warm in winter."
  "The farmer loaded hay onto the wagon."
  "We found a quiet table near the window."
  "The map showed a hidden path through the forest."
  "Lemon juice makes the sauce taste brighter."
  "The concert was cancelled because of the storm."
  "He wore a grey coat and a black hat."
  "The puzzle had a thousand tiny pieces."
  "Fold the towels and stack them on the shelf."
  "The crowd cheered when the runner crossed the line."
  "Yesterday the bus was almost empty."
  "Salt and pepper stood beside the candle."
  "The heavy door creaked open very slowly."
  "Bees buzzed around the purple flowers."
  "The phone rang just as I fell asleep."
  "Measure the board twice and cut it once."
  "Tall pine trees lined the winding road."
  "The nurse wrote down the patient's temperature."
  "Ice cream melts quickly in the summer heat."
  "A large brown owl sat on the fence post."
  "Dinner is ready."
  "Where did you put the blue folder?"
)
((per_voice >= 1 && per_voice <= ${#sentences[@]})) || {
  echo "--per-voice must be 1..${#sentences[@]}" >&2
  exit 2
}

# --- seeded RNG (31-bit LCG; the state lives in $rng, results in $R) -----------------------------
rng=$(((seed * 2654435761 + 1) & 0x7fffffff))
step() { rng=$(((rng * 1103515245 + 12345) & 0x7fffffff)); }
rnd() { # rnd LO HI -> R uniform integer in [LO, HI]
  local hi15
  step; hi15=$((rng >> 16))
  step
  R=$(((((hi15 << 15) | (rng >> 16)) % ($2 - $1 + 1)) + $1))
}
dec() { # dec N -> R = N/100 as a decimal ("-23.05")
  local n=$1 sign=""
  ((n >= 0)) || { sign=-; n=$((-n)); }
  R=$(printf '%s%d.%02d' "$sign" $((n / 100)) $((n % 100)))
}
pick_noise() { rnd 0 1; R=$([[ $R == 0 ]] && echo whitenoise || echo pinknoise); }

# --- per-utterance job (runs under xargs -P) ------------------------------------------------------
# Fields (tab-separated): split vid voice sid text rate pitch amp gap pre post rms ntype snr noff
#   hp lp eqf eqq eqg odg odc rev hfd room pdel srms sntype ssnr snoff
make_utt() {
  set -euo pipefail
  local split vid voice sid text rate pitch amp gap pre post rms ntype snr noff
  local hp lp eqf eqq eqg odg odc rev hfd room pdel srms sntype ssnr snoff
  IFS=$'\t' read -r split vid voice sid text rate pitch amp gap pre post rms ntype snr noff \
    hp lp eqf eqq eqg odg odc rev hfd room pdel srms sntype ssnr snoff <<<"$1"
  local w="$SC_TMP/${vid}_$sid" name="${vid}_$sid"
  local bona="$SC_OUT/$split/bonafide/$name.wav" spoof="$SC_OUT/$split/spoof/${name}_replay.wav"
  local f32=(-e floating-point -b 32) i16=(-e signed-integer -b 16)
  mkdir -p "$w"
  # bona fide: TTS -> 16 kHz, random leading/trailing silence, level, + low noise floor
  espeak-ng -v "$voice" -s "$rate" -p "$pitch" -a "$amp" -g "$gap" -w "$w/tts.wav" "$text"
  sox -R -D "$w/tts.wav" "${f32[@]}" "$w/b1.wav" remix 1 gain -3 rate -v 16000 pad "$pre" "$post"
  level "$w/b1.wav" "$w/b2.wav" "$rms" "${f32[@]}"
  noise "$w/b2.wav" "$w/bn.wav" "$ntype" "$noff" "$(awk -v a="$rms" -v b="$snr" 'BEGIN{print a-b}')"
  sox -R -D -m -v 1 "$w/b2.wav" -v 1 "$w/bn.wav" "${i16[@]}" "$bona"
  # spoof: replay of the bona fide file through loudspeaker + room + microphone
  sox -R -D -G "$bona" "${f32[@]}" "$w/s1.wav" \
    sinc "$hp-$lp" equalizer "$eqf" "${eqq}q" "$eqg" gain -n -6 overdrive "$odg" "$odc" \
    reverb "$rev" "$hfd" "$room" 100 "$pdel" 0
  level "$w/s1.wav" "$w/s2.wav" "$srms" "${f32[@]}"
  noise "$w/s2.wav" "$w/sn.wav" "$sntype" "$snoff" "$(awk -v a="$srms" -v b="$ssnr" 'BEGIN{print a-b}')"
  sox -R -D -m -v 1 "$w/s2.wav" -v 1 "$w/sn.wav" "${i16[@]}" "$spoof"
  rm -rf "$w"
}
rms_db() { sox "$1" -n stats 2>&1 | awk '/^RMS lev dB/ {print $4}'; }
level() { # level IN OUT TARGET_RMS_DB [format...]: scale IN to the target RMS level
  local in=$1 outf=$2 target=$3 g
  shift 3
  g=$(awk -v t="$target" -v r="$(rms_db "$in")" 'BEGIN{printf "%.3f", t-r}')
  sox -R -D "$in" "$@" "$outf" gain "$g"
}
noise() { # noise REF OUT TYPE OFFSET_SAMPLES RMS_DB: REF-length window of sox's noise stream
  local ref=$1 outf=$2 type=$3 off=$4 db=$5
  sox -R -D "$ref" -e floating-point -b 32 "$outf.raw.wav" pad 0 "${off}s" synth "$type" trim "${off}s"
  level "$outf.raw.wav" "$outf" "$db" -e floating-point -b 32
  rm -f "$outf.raw.wav"
}
export -f make_utt rms_db level noise

# --- output dir ----------------------------------------------------------------------------------
start=$SECONDS
if [[ -e $out ]]; then
  if [[ -f $out/.spoof_corpus ]]; then
    rm -rf "$out"
  elif [[ -n $(ls -A "$out") ]]; then
    echo "$out exists, is not empty and was not made by this script; not touching it" >&2
    exit 1
  fi
fi
mkdir -p "$out"/{train,test}/{bonafide,spoof} "$out/asvspoof/flac" "$out/asvspoof/protocols"
touch "$out/.spoof_corpus"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SC_OUT=$out SC_TMP=$tmp

# --- draw every parameter up front (order fixed, so output does not depend on --jobs) ------------
jobs_file=$tmp/jobs.tsv
{
  printf 'split\tvoice_id\tvoice\tsentence_id\ttext\trate\tpitch\tamp\tgap\tpre_s\tpost_s\trms_db'
  printf '\tnoise\tsnr_db\tnoise_off\thp_hz\tlp_hz\teq_hz\teq_q\teq_db\tod_gain\tod_colour\treverb'
  printf '\thf_damp\troom\tpredelay_ms\tspoof_rms_db\tspoof_noise\tspoof_snr_db\tspoof_noise_off\n'
} >"$out/params.tsv"
for v in "${voices[@]}"; do
  read -r vid voice split <<<"$v"
  for ((s = 1; s <= per_voice; s++)); do
    sid=$(printf 's%03d' "$s")
    f=("$split" "$vid" "$voice" "$sid" "${sentences[s - 1]}")
    rnd 130 190; f+=("$R")                    # espeak-ng rate (wpm)
    rnd 30 70; f+=("$R")                      # pitch
    rnd 60 130; f+=("$R")                     # amplitude
    rnd 0 2; f+=("$R")                        # extra word gap (x10 ms)
    rnd 5 40; dec "$R"; f+=("$R")             # leading silence (s)
    rnd 5 40; dec "$R"; f+=("$R")             # trailing silence (s)
    rnd -3400 -2400; dec "$R"; f+=("$R")      # bona fide RMS level (dBFS)
    pick_noise; f+=("$R")                     # bona fide noise colour
    rnd 3000 5000; dec "$R"; f+=("$R")        # bona fide SNR (dB)
    rnd 0 480000; f+=("$R")                   # noise window offset (samples)
    rnd 150 400; f+=("$R")                    # replay highpass (Hz)
    rnd 3500 7000; f+=("$R")                  # replay lowpass (Hz)
    rnd 600 3000; f+=("$R")                   # loudspeaker resonance (Hz)
    rnd 70 200; dec "$R"; f+=("$R")           # resonance Q
    rnd 200 800; dec "$R"; f+=("$R")          # resonance gain (dB)
    rnd 2 10; f+=("$R")                       # overdrive gain (dB)
    rnd 10 40; f+=("$R")                      # overdrive colour
    rnd 20 70; f+=("$R")                      # reverberance (%)
    rnd 20 80; f+=("$R")                      # HF damping (%)
    rnd 30 100; f+=("$R")                     # room scale (%)
    rnd 0 20; f+=("$R")                       # pre-delay (ms)
    rnd -3400 -2400; dec "$R"; f+=("$R")      # spoof RMS level (dBFS)
    pick_noise; f+=("$R")                     # re-recording noise colour
    rnd 3000 5000; dec "$R"; f+=("$R")        # re-recording SNR (dB)
    rnd 0 480000; f+=("$R")                   # noise window offset (samples)
    (IFS=$'\t'; echo "${f[*]}")
  done
done >"$jobs_file"
cat "$jobs_file" >>"$out/params.tsv"

n_utt=$(wc -l <"$jobs_file")
echo "generating $n_utt bona fide + $n_utt spoof utterances with $jobs jobs..."
# shellcheck disable=SC2016 # $1 is expanded by the inner bash
xargs -d '\n' -n 1 -P "$jobs" bash -c 'make_utt "$1"' _ <"$jobs_file"

# --- ASVspoof-style copy: shuffled ids, FLAC, protocols -------------------------------------------
for split in train test; do
  mapfile -t files < <(cd "$out" && find "$split" -name '*.wav' | sort)
  for ((i = ${#files[@]} - 1; i > 0; i--)); do # seeded Fisher-Yates shuffle
    rnd 0 "$i"; t=${files[i]}; files[i]=${files[R]}; files[R]=$t
  done
  if [[ $split == train ]]; then prefix=LA_T_1; else prefix=LA_E_2; fi
  for ((i = 0; i < ${#files[@]}; i++)); do
    p=${files[i]} id=$(printf '%s%06d' "$prefix" $((i + 1)))
    b=${p##*/} vnum=${b:1:2}
    if [[ $p == */spoof/* ]]; then sys=A01 key=spoof; else sys=- key=bonafide; fi
    printf 'LA_00%s %s - %s %s\n' "$vnum" "$id" "$sys" "$key" >>"$tmp/$split.proto"
    printf '%s\t%s\n' "$id" "$p" >>"$tmp/map.tsv"
  done
  sort -k1,1 -k2,2 "$tmp/$split.proto" >"$out/asvspoof/protocols/$split.txt"
done
cp "$tmp/map.tsv" "$out/asvspoof/utt_map.tsv"
awk -F'\t' -v o="$out" '{print o "/" $2 "\n" o "/asvspoof/flac/" $1 ".flac"}' "$tmp/map.tsv" |
  xargs -d '\n' -n 2 -P "$jobs" sox -R -D

# --- summary -------------------------------------------------------------------------------------
echo
echo "train voices: $(printf '%s\n' "${voices[@]}" | awk '$3=="train"{printf "%s=%s ", $1, $2}')"
echo "test voices:  $(printf '%s\n' "${voices[@]}" | awk '$3=="test"{printf "%s=%s ", $1, $2}')"
for d in "$out"/{train,test}/{bonafide,spoof}; do
  n=$(find "$d" -name '*.wav' | wc -l)
  secs=$(find "$d" -name '*.wav' -print0 | xargs -0 soxi -D | awk '{t+=$1} END{printf "%.1f", t}')
  printf '%-40s %5d files %8.1f s (mean %.2f s)\n' "$d" "$n" "$secs" "$(awk -v t="$secs" -v n="$n" 'BEGIN{print n ? t/n : 0}')"
done
total=$(find "$out" -path "$out/asvspoof" -prune -o -name '*.wav' -print0 | xargs -0 soxi -D | awk '{t+=$1} END{printf "%.1f", t}')
echo "total wav audio: $total s ($(awk -v t="$total" 'BEGIN{printf "%.1f", t/60}') min)"
for sp in train:T test:E; do
  echo "asvspoof/protocols/${sp%:*}.txt: $(wc -l <"$out/asvspoof/protocols/${sp%:*}.txt") lines," \
    "$(find "$out/asvspoof/flac" -name "LA_${sp#*:}_*.flac" | wc -l) LA_${sp#*:}_*.flac files"
done
echo "time: $((SECONDS - start)) s"
