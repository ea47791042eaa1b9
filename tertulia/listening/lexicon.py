"""A small polarity lexicon written for this project (folded forms: lower case, no accents).

It gives the classifier features that generalise beyond the words of the training posts: a positive
or negative word, and the same under a negation ("no me gusta", "not worth it"). Stems are matched as
prefixes of at least five letters so "encant" covers encanta, encantada, encantadisimo.
"""

POSITIVE = frozenset("""
good great love loved lovely loving amazing awesome excellent perfect perfectly happy glad thrilled delighted
wonderful fantastic brilliant best beautiful gorgeous stunning comfy comfortable recommend recommended thanks
thank grateful impressed superb fast quick friendly kind helpful nice pleased easy sturdy soft flawless favourite
favorite enjoy enjoying fabulous cute lovely solid reliable worth gem obsessed
bueno buena buenos buenas buenisimo buenisima genial encanta encantan encanto encantada encantado perfecto
perfecta perfectos excelente maravilla maravilloso maravillosa precioso preciosa preciosos preciosas bonito
bonita bonitas bonitos feliz contento contenta contentisimo gracias agradecido agradecida recomiendo
recomendable comodo comoda comodas comodos comodisimas rapido rapida rapidisimo rapidez amable amables
estupendo estupenda increible espectacular mejor calidad gusto enamorada enamorado chifla flipa ilusion
impecable top crack cracks suave suavisima suavisimas fenomenal
""".split())

NEGATIVE = frozenset("""
bad terrible awful horrible worst poor broken broke cheap junk rubbish scam disappointed disappointing
disappointment angry furious annoyed annoying useless faulty defective late delay delayed missing never
refund rip waste hate hated ridiculous shameful disgraceful liars cheated sneaky unacceptable fed upset
damaged cracked smashed soaked expired dangerous ignored excuses overcharged leaks stuck lost slow failed sad
shame nothing complaint complain con fake wrong error crashing crashes stupid idiot idiots crap shit
waiting
malo mala malos malas malisima fatal pesimo pesima pesimos horrible horribles terrible desastre decepcion
decepcionado decepcionada decepcionante roto rota rotos rotas estafa enfadado enfadada harto harta indignada
indignado verguenza vergonzoso inutil defectuoso defectuosa tarde retraso nunca nadie reclamacion
reclamaciones queja engano enganado mentirosos mentira caducado inaceptable peligrosa perdido perdida
barato barata chapuza asco excusas peor odio rabia triste pena lastima frustracion desesperado desesperada
idiota idiotas mierda imbecil imbeciles esperando
devolucion reembolso cobraron cobrado error falta faltaba faltaban mojado destrozada
""".split())

NEGATORS = frozenset("no not never nunca ni sin nothing nada dont don't didnt doesnt isnt wasnt cant won't wont".split())

_STEM = 5


def _stems(words: frozenset[str]) -> frozenset[str]:
    return frozenset(w[:_STEM] for w in words if len(w) >= 7)


POSITIVE_STEMS = _stems(POSITIVE)
NEGATIVE_STEMS = _stems(NEGATIVE)


def polarity(word: str) -> int:
    """+1, -1 or 0 for one folded word."""
    if word in POSITIVE:
        return 1
    if word in NEGATIVE:
        return -1
    if len(word) >= 7:
        stem = word[:_STEM]
        if stem in POSITIVE_STEMS:
            return 1
        if stem in NEGATIVE_STEMS:
            return -1
    return 0

# Function words only one of the two languages uses (folded): a tie-breaker for very short texts,
# where character n-grams say little ("eres un idiota").
SPANISH_ONLY = frozenset("""
el la los las un una unos unas y o pero que de del al en por para con sin es son eres soy estoy esta este
esto eso muy mas ya yo tu su sus mi mis nos os les le lo se te porque cuando donde como hay tiene
tienen tengo quiero gracias hola vale nada todo bien mal sois somos fue era
""".split())
ENGLISH_ONLY = frozenset("""
the an and or but of in on at to for with without is are am was were you your yours i my we our
they their it its this that these those very more already because when where how there have has had
want thanks hello hi nothing everything good bad do does did not just so
""".split())
SPANISH_LETTERS = frozenset("ñ¿¡áéíóú")
