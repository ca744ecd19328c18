import json,sys
ours=[json.loads(l) for l in open(sys.argv[1])]
dj=[json.loads(l) for l in open(sys.argv[2])]
print(len(ours), len(dj))
key=lambda d:(d['meta']['file'],d['meta']['row'])
ok={key(d):d['text'] for d in ours}
dk={key(d):d['text'] for d in dj}
print('only ours', len(set(ok)-set(dk)), sorted(set(ok)-set(dk))[:5], 'only dj', len(set(dk)-set(ok)), sorted(set(dk)-set(ok))[:5])
diff=[k for k in set(ok)&set(dk) if ok[k]!=dk[k]]
print('text differs', len(diff))
for k in diff[:4]:
    a,b=ok[k],dk[k]
    n=min(len(a),len(b))
    i=next((i for i in range(n) if a[i]!=b[i]), n)
    print(k, repr(a[max(0,i-30):i+40]), '|||', repr(b[max(0,i-30):i+40]))
