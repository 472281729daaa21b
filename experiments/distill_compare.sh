#!/usr/bin/env bash
# Distilled student vs the same student trained alone, over several seeds (docs/distillation.md).
# Both runs use the same training flags; only the loss differs. Each model is evaluated on the
# Fashion-MNIST test split with `mcompress eval`; prints one row per seed (with the validation
# accuracy each run kept, which is what configurations were chosen by) and the mean difference.
#
# usage: experiments/distill_compare.sh [key=value ...]
#   teacher=runs/zoo/convnet.h5  student=lenet5-small  seeds="0 1 2"  epochs=10
#   temperature=4  alpha=0.9  lr=0.001  schedule=cosine  batch=128  threads=1
#   distill_args=""   (extra flags for `mcompress distill` only, e.g. "--hint-teacher 13 ...")
#   out=runs/distill  tag=""  (suffix of the distilled files, to keep several configurations)
# Baselines depend on the training flags only and are reused when their file exists.
set -euo pipefail
cd "$(dirname "$0")/.."
teacher=runs/zoo/convnet.h5 student=lenet5-small seeds="0 1 2" epochs=10 temperature=4 alpha=0.9
lr=0.001 schedule=cosine batch=128 threads=1 distill_args="" out=runs/distill tag=""
for kv in "$@"; do
  case "$kv" in
    teacher=*|student=*|seeds=*|epochs=*|temperature=*|alpha=*|lr=*|schedule=*|batch=*|threads=*|distill_args=*|out=*|tag=*)
      declare "$kv" ;;
    *) echo "unknown argument '$kv'" >&2; exit 2 ;;
  esac
done
mc=build/apps/mcompress
[ -f "$teacher" ] || { echo "no teacher '$teacher' (experiments/train_zoo.sh makes it)" >&2; exit 1; }
mkdir -p "$out"

train_flags=(--epochs "$epochs" --lr "$lr" --schedule "$schedule" --batch-size "$batch"
             --threads "$threads" --quiet --force)
# The same settings for distill, whose flags are its stage's options (`mcompress stages`).
distill_flags=(--epochs "$epochs" --lr "$lr" --lr-schedule "$schedule" --batch-size "$batch"
               --threads "$threads" --quiet --force)
settings="e${epochs}-lr${lr}-${schedule}-b${batch}"
accuracy() {  # test accuracy in percent, through the deployable runtime
  "$mc" eval "$1" --json --latency-batch --threads "$threads" |
    python3 -c 'import json,sys; print("%.2f" % (100 * json.load(sys.stdin)["accuracy"]))'
}
val_accuracy() {  # validation accuracy of the kept (best) epoch, from the model's history
  "$mc" inspect --history "$1" | python3 -c '
import json, sys
h = [json.loads(l) for l in sys.stdin if l.startswith("  {")][-1]
print("%.2f" % (100 * h["epochs"][h["best_epoch"] - 1]["val_accuracy"]))'
}

echo "teacher $teacher ($(accuracy "$teacher")% test), student $student; $epochs epochs, lr $lr" \
     "$schedule, batch $batch; T $temperature, alpha $alpha ${distill_args:+; $distill_args}"
echo
echo "| seed | alone val (%) | distilled val (%) | alone test (%) | distilled test (%) | test difference (points) |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
sum=0 val_sum=0 n=0
for seed in $seeds; do
  alone="$out/$student-alone-$settings-s$seed.h5"
  kd="$out/$student-kd-$settings-T$temperature-a$alpha$tag-s$seed.h5"
  [ -f "$alone" ] || "$mc" train --arch "$student" --seed "$seed" "${train_flags[@]}" \
                       --out "$alone" >"${alone%.h5}.log" 2>&1
  # shellcheck disable=SC2086  # distill_args is a list of flags
  "$mc" distill --teacher "$teacher" --student "$student" --seed "$seed" "${distill_flags[@]}" \
    --temperature "$temperature" --alpha "$alpha" $distill_args --out "$kd" >"${kd%.h5}.log" 2>&1
  a=$(accuracy "$alone") d=$(accuracy "$kd") va=$(val_accuracy "$alone") vd=$(val_accuracy "$kd")
  diff=$(python3 -c "print('%+.2f' % ($d - $a))")
  echo "| $seed | $va | $vd | $a | $d | $diff |"
  sum=$(python3 -c "print($sum + $d - $a)") val_sum=$(python3 -c "print($val_sum + $vd - $va)")
  n=$((n + 1))
done
echo
python3 -c "print('mean difference over %d seeds: %+.2f points test, %+.2f points validation'
                  % ($n, $sum / $n, $val_sum / $n))"
